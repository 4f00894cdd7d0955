# jomo's joint model on validity-matrix replications (benchmarks/compare_defaults_jomo.py writes in.csv).
# usage: Rscript jomo_cells.R KIND IN.csv OUT.csv NBURN NBETWEEN NIMP
# IN.csv: rep, g, y, z, x (x missing as NA); OUT.csv: rep, imp, row (1..n within rep), x.
# y and z are level-1 outcomes of the joint model; x is a level-2 outcome (Y2) for the cluster-level
# kinds, else a level-1 one; binary x as a factor (jomo's latent normal).
args <- commandArgs(trailingOnly = TRUE)
kind <- args[1]; d <- read.csv(args[2]); out <- args[3]
nburn <- as.integer(args[4]); nbetween <- as.integer(args[5]); nimp <- as.integer(args[6])
suppressMessages(library(jomo))
res <- list()
for (r in unique(d$rep)) {
  s <- d[d$rep == r, ]
  set.seed(1000 + r)
  if (kind == "cluster continuous") {
    imp <- jomo(Y = data.frame(y = s$y, z = s$z), Y2 = data.frame(x = s$x), clus = s$g,
                nburn = nburn, nbetween = nbetween, nimp = nimp, output = 0)
  } else if (kind == "cluster binary") {
    imp <- jomo(Y = data.frame(y = s$y, z = s$z), Y2 = data.frame(x = factor(s$x)), clus = s$g,
                nburn = nburn, nbetween = nbetween, nimp = nimp, output = 0)
  } else {
    xx <- if (kind == "systematic binary") factor(s$x) else s$x
    imp <- jomo(Y = data.frame(y = s$y, z = s$z, x = xx), clus = s$g,
                nburn = nburn, nbetween = nbetween, nimp = nimp, output = 0)
  }
  imp <- imp[imp$Imputation > 0, ]
  imp <- imp[order(imp$Imputation, imp$id), ]
  res[[length(res) + 1]] <- data.frame(rep = r, imp = imp$Imputation, row = ave(imp$id, imp$Imputation, FUN = seq_along),
                                       x = as.numeric(as.character(imp$x)))
}
write.csv(do.call(rbind, res), out, row.names = FALSE)
