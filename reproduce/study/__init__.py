"""The Eq. (2) study: readings of the entropy weighting loss (`readings`), its NumPy analysis
(`eq2_analysis`), label relations (`relations`), the ablation CLI (`ablation`) and its figures
(`plots`). See docs/entropy_weighting_loss.md."""
