"""The training lineage as declared assets: model files → bundle → FL job → global model, partitioned by model.

They are specs, not computations: the ``train_model`` ops materialize them for the run's partition, so the UI
draws real edges between keys it knows before any run (keys made at run time get no lineage graph). A
partition is a model's readable key (``domain.partitions``), added by the queue sensor for every registered
model and by a run launched for a model that has none yet.
"""

import dagster as dg

from flip_pipelines.domain.partitions import MODEL_PARTITIONS_NAME

MODEL_PARTITIONS = dg.DynamicPartitionsDefinition(name=MODEL_PARTITIONS_NAME)
GROUP = "flip_training"

MODEL_FILES = dg.AssetSpec(
    ["flip", "model_files"], group_name=GROUP, partitions_def=MODEL_PARTITIONS, kinds={"s3"},
    description="The model owner's files in the model bucket (``<model_id>/``), as uploaded.",
)
TRAINING_BUNDLE = dg.AssetSpec(
    ["flip", "training_bundle"], deps=[MODEL_FILES], group_name=GROUP, partitions_def=MODEL_PARTITIONS,
    kinds={"s3"}, description="The model's files merged with the net backend's base application, ready to upload.",
)
FL_JOB = dg.AssetSpec(
    ["flip", "fl_job"], deps=[TRAINING_BUNDLE], group_name=GROUP, partitions_def=MODEL_PARTITIONS,
    description="The job the net's FL server accepted for a training (NVFlare job or Flower run).",
)
GLOBAL_MODEL = dg.AssetSpec(
    ["flip", "global_model"], deps=[FL_JOB], group_name=GROUP, partitions_def=MODEL_PARTITIONS, kinds={"s3"},
    description="The trained global model in the results bucket, with its per-round metrics.",
)
TRAINING_ASSETS = [MODEL_FILES, TRAINING_BUNDLE, FL_JOB, GLOBAL_MODEL]
