# The egsingle random-slope models fitted by lme4 to a tight optimum, for tests/analysis/test_mixed_several_factors.py.
# lme4 1.1-31 with default settings stops this model early ("Model failed to converge with max|grad| = 0.0032");
# restarted from its own theta (rs_reml_restart of ../shared/reference/egsingle_lmer.csv) it converges without
# warning, yet still ~2e-6 above the minimum of the REML criterion, which leaves the school-level
# intercept-slope covariance 7.5e-4 (relative) from the optimum. Here nloptwrap's BOBYQA runs to tight
# tolerances, so the fit is the optimum itself (REML criterion 16293.6972361). The same holds for the model
# without the school-level covariance (rs_uncorr_school_reml, which lme4's defaults leave 1.5e-4 from the
# optimum in the school-level variances).
# Input: the egsingle CSV of the shared data folder (mlmRev 1.0-8). Output: egsingle_rs_tight_lmer.csv, in the
# format of ../shared/reference/egsingle_lmer.csv (models rs_reml_tight, rs_uncorr_school_reml_tight;
# 10 significant digits).
# Run from the repository root:  Rscript benchmarks/egsingle_rs_tight_reference.R [data folder] [output folder]
# (R 4.2.2, lme4 1.1-31; about 4 s on one core.)
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
datadir <- if (length(args) > 0) args[1] else "../shared/data"
outdir <- if (length(args) > 1) args[2] else "tests/analysis/reference"
eg <- read.csv(file.path(datadir, "egsingle.csv"), stringsAsFactors = TRUE)
eg$schoolid <- factor(eg$schoolid); eg$childid <- factor(eg$childid)
eg$black <- factor(eg$black); eg$hispanic <- factor(eg$hispanic)
tight <- lmerControl(optimizer = "nloptwrap",
                     optCtrl = list(ftol_abs = 1e-14, ftol_rel = 1e-15, xtol_abs = 1e-12, xtol_rel = 1e-12, maxeval = 1e5))
tidy <- function(fit, model) {
  cf <- summary(fit)$coefficients
  vc <- as.data.frame(VarCorr(fit))
  vc$grp <- sub("\\.[0-9]+$", "", vc$grp)                       # (a || g) terms come back as g, g.1
  vc$grp <- ifelse(vc$grp == "schoolid.childid", "schoolid:childid", vc$grp)
  rbind(
    data.frame(model = model, kind = "fixed", group = "", term = rownames(cf),
               estimate = cf[, "Estimate"], std_error = cf[, "Std. Error"]),
    data.frame(model = model, kind = ifelse(is.na(vc$var2), "variance", "covariance"), group = vc$grp,
               term = ifelse(is.na(vc$var2), ifelse(is.na(vc$var1), "(residual)", vc$var1),
                             paste(vc$var1, vc$var2, sep = "~~")),
               estimate = vc$vcov, std_error = NA),
    data.frame(model = model, kind = "fit", group = "", term = c("REMLcrit", "converged_no_warnings"),
               estimate = c(REMLcrit(fit), as.numeric(length(fit@optinfo$conv$lme4$messages) == 0)), std_error = NA))
}
fixed <- "math ~ year + female + black + hispanic"
rs <- lmer(as.formula(paste(fixed, "+ (year | schoolid) + (year | schoolid:childid)")), data = eg, REML = TRUE,
           control = tight)
uncorr <- lmer(as.formula(paste(fixed, "+ (year || schoolid) + (year | schoolid:childid)")), data = eg, REML = TRUE,
               control = tight)
out <- rbind(tidy(rs, "rs_reml_tight"), tidy(uncorr, "rs_uncorr_school_reml_tight"))
out$estimate <- signif(out$estimate, 10); out$std_error <- signif(out$std_error, 10)
write.csv(out, file.path(outdir, "egsingle_rs_tight_lmer.csv"), row.names = FALSE, na = "")
