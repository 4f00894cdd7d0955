# Reference fits of analysis formulas with transformed terms, for tests/analysis/test_formula_terms_parity.py.
# Input: the 5 completed popmis datasets of ../shared/reference/popmis_completed_long.csv (R mice 2l.pan, seed 2022).
# Output: tests/analysis/reference/formula_terms_fits.csv and formula_terms_pooled.csv.
# Run from the repository root:  Rscript benchmarks/formula_terms_reference.R [shared/reference folder] [output folder]
# (R 4.2, lme4 1.1-31, mitml 0.4-4, splines from base R; about 10 s on one core.)
#
# Models (column `model`), each fitted on every completed dataset (column `imp`):
#   lmm_terms  lmer(popular ~ relevel(factor(sex), ref = "1") + I(texp^2) + log(texp) + (1 | school), REML)
#              skmlmi: popular ~ C(sex, Treatment(1)) + I(texp ** 2) + np.log(texp) + (1 | school)
#   lmm_slope  lmer(popular ~ relevel(factor(sex), ref = "1") * log(texp) + (1 + sex | school), REML)
#              skmlmi: popular ~ C(sex, Treatment(1)) * np.log(texp) + (1 + sex | school)
#   lm_poly    lm(popular ~ poly(texp, 2) + factor(sex))       skmlmi OLS: popular ~ poly(texp, 2) + C(sex)
#   lm_bs      lm(popular ~ splines::bs(texp, df = 4) + sex)    skmlmi OLS: popular ~ bs(texp, df=4) + sex
#   lm_scale   lm(popular ~ scale(texp) + sqrt(texp) + exp(sex))  skmlmi OLS: popular ~ scale(texp) + np.sqrt(texp) + np.exp(sex)
# Rows: kind "fixed" (position = column of the fixed-effects design, 1-based, term = R's name, estimate,
# std_error); kind "variance" (lme4 VarCorr: term "(Intercept)", "sex", "(Intercept)~~sex", "Residual");
# kind "fit" (REMLcrit or logLik, df.residual). Pooled: mitml testEstimates(extra.pars = TRUE, df.com).
suppressMessages({library(lme4); library(mitml); library(splines)})
args <- commandArgs(trailingOnly = TRUE)
refdir <- if (length(args) > 0) args[1] else "../shared/reference"
outdir <- if (length(args) > 1) args[2] else "tests/analysis/reference"
long <- read.csv(file.path(refdir, "popmis_completed_long.csv"))
sets <- lapply(1:5, function(i) long[long$.imp == i, c("school", "popular", "sex", "texp")])
fmt <- function(x) signif(x, 10)

models <- list(
  lmm_terms = function(d) lmer(popular ~ relevel(factor(sex), ref = "1") + I(texp^2) + log(texp) + (1 | school), data = d, REML = TRUE),
  lmm_slope = function(d) lmer(popular ~ relevel(factor(sex), ref = "1") * log(texp) + (1 + sex | school), data = d, REML = TRUE),
  lm_poly = function(d) lm(popular ~ poly(texp, 2) + factor(sex), data = d),
  lm_bs = function(d) lm(popular ~ bs(texp, df = 4) + sex, data = d),
  lm_scale = function(d) lm(popular ~ scale(texp) + sqrt(texp) + exp(sex), data = d)
)
rows <- list(); pooled <- list()
add <- function(...) rows[[length(rows) + 1]] <<- data.frame(...)
for (model in names(models)) {
  fits <- lapply(sets, models[[model]])
  for (i in seq_along(fits)) {
    a <- fits[[i]]
    mixed <- inherits(a, "merMod")
    fe <- if (mixed) fixef(a) else coef(a)
    se <- sqrt(diag(as.matrix(vcov(a))))
    for (k in seq_along(fe)) add(model = model, imp = i, kind = "fixed", position = k, term = names(fe)[k], estimate = fmt(fe[[k]]), std_error = fmt(se[[k]]))
    if (mixed) {
      vc <- as.data.frame(VarCorr(a))
      for (k in seq_len(nrow(vc))) {
        nm <- if (vc$grp[k] == "Residual") "Residual" else if (is.na(vc$var2[k])) vc$var1[k] else paste0(vc$var1[k], "~~", vc$var2[k])
        add(model = model, imp = i, kind = "variance", position = NA, term = nm, estimate = fmt(vc$vcov[k]), std_error = NA)
      }
      add(model = model, imp = i, kind = "fit", position = NA, term = "REMLcrit", estimate = fmt(REMLcrit(a)), std_error = NA)
    } else {
      add(model = model, imp = i, kind = "fit", position = NA, term = "logLik", estimate = fmt(as.numeric(logLik(a))), std_error = NA)
    }
    add(model = model, imp = i, kind = "fit", position = NA, term = "df.residual", estimate = df.residual(a), std_error = NA)
  }
  class(fits) <- c("mitml.result", "list")
  te <- testEstimates(fits, extra.pars = TRUE, df.com = df.residual(fits[[1]]))
  e <- as.data.frame(te$estimates)
  for (k in seq_len(nrow(e))) pooled[[length(pooled) + 1]] <- data.frame(model = model, position = k, term = rownames(e)[k],
    estimate = fmt(e[k, 1]), std_error = fmt(e[k, 2]), df = fmt(e[k, 4]), fmi = fmt(e[k, 7]))
}
dir.create(outdir, showWarnings = FALSE, recursive = TRUE)
write.csv(do.call(rbind, rows), file.path(outdir, "formula_terms_fits.csv"), row.names = FALSE)
write.csv(do.call(rbind, pooled), file.path(outdir, "formula_terms_pooled.csv"), row.names = FALSE)
cat(R.version.string, "lme4", as.character(packageVersion("lme4")), "mitml", as.character(packageVersion("mitml")), "\n")
