"""The training's declared assets: lineage a person can read in the Dagster UI, one partition per model."""
