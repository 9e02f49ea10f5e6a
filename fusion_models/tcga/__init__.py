"""Learning on the TCGA adult diffuse glioma cohort: cohort loading, baselines, the penalised linear model, CV."""
