# lme4 fits of crossed random slopes and of three crossed factors, for tests/analysis/test_mixed_several_factors.py.
# Data: InstEval rows of the first 400 students (s <= 400), from the shared data folder (lme4 1.1-31 `InstEval`).
# Models (REML unless said; lme4 1.1-31 with nloptwrap run to tight tolerances, so each fit is the optimum):
#   crossed_slope_reml  y ~ service + (1 | s) + (1 + service | d)
#   three_crossed_ml    y ~ service + (1 | s) + (1 | d) + (1 | dept), ML
# Output: tests/analysis/reference/insteval_subset_lmer.csv (format of ../shared/reference/insteval_lmer.csv,
# 10 significant digits). Run from the repository root:
#   Rscript benchmarks/several_factors_extra_reference.R [data folder] [output folder]    (R 4.2.2; ~10 s)
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
datadir <- if (length(args) > 0) args[1] else "../shared/data"
outdir <- if (length(args) > 1) args[2] else "tests/analysis/reference"
ie <- read.csv(file.path(datadir, "insteval.csv"))
ie <- ie[ie$s <= 400, ]
ie$s <- factor(ie$s); ie$d <- factor(ie$d); ie$service <- factor(ie$service); ie$dept <- factor(ie$dept)
tight <- lmerControl(optimizer = "nloptwrap",
                     optCtrl = list(ftol_abs = 1e-14, ftol_rel = 1e-15, xtol_abs = 1e-12, xtol_rel = 1e-12, maxeval = 1e5))
tidy <- function(fit, model) {
  cf <- summary(fit)$coefficients
  vc <- as.data.frame(VarCorr(fit))
  rbind(
    data.frame(model = model, kind = "fixed", group = "", term = rownames(cf),
               estimate = cf[, "Estimate"], std_error = cf[, "Std. Error"]),
    data.frame(model = model, kind = ifelse(is.na(vc$var2), "variance", "covariance"), group = vc$grp,
               term = ifelse(is.na(vc$var2), ifelse(is.na(vc$var1), "(residual)", vc$var1),
                             paste(vc$var1, vc$var2, sep = "~~")),
               estimate = vc$vcov, std_error = NA),
    data.frame(model = model, kind = "fit", group = "",
               term = c(if (isREML(fit)) "REMLcrit" else "deviance", "nobs", paste0("ngroups:", names(ngrps(fit)))),
               estimate = c(if (isREML(fit)) REMLcrit(fit) else deviance(fit), nobs(fit), as.numeric(ngrps(fit))),
               std_error = NA))
}
slope <- lmer(y ~ service + (1 | s) + (1 + service | d), data = ie, REML = TRUE, control = tight)
three <- lmer(y ~ service + (1 | s) + (1 | d) + (1 | dept), data = ie, REML = FALSE, control = tight)
out <- rbind(tidy(slope, "crossed_slope_reml"), tidy(three, "three_crossed_ml"))
out$estimate <- signif(out$estimate, 10); out$std_error <- signif(out$std_error, 10)
write.csv(out, file.path(outdir, "insteval_subset_lmer.csv"), row.names = FALSE, na = "")
