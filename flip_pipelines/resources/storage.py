"""Buckets and S3 access for bundles and results, as one Dagster resource."""

from collections.abc import Callable

import dagster as dg

from flip_pipelines import settings
from flip_pipelines.domain.uploaded_results import StoredObject
from flip_pipelines.resources.bundles import BundleStore
from flip_pipelines.resources.s3 import FlipS3Resource


class FlipStorage(dg.ConfigurableResource):
    s3: dg.ResourceDependency[FlipS3Resource]
    model_bucket: str = settings.model_bucket()
    bundle_bucket: str = settings.bundle_bucket()
    results_bucket: str = settings.results_bucket()
    base_app_source: str = settings.base_app_source()
    presign_ttl_seconds: int = settings.presign_ttl_seconds()
    copy_workers: int = 16

    def bundle_store(self, log: Callable[[str], None] | None = None,
                     on_copy: Callable[[], None] | None = None) -> BundleStore:
        """A bundle store on this resource's S3 client; ``log`` receives progress lines, ``on_copy`` is called
        before each object is copied (the crash drills' hook)."""
        return BundleStore(
            self.s3.get_client(),
            model_bucket=self.model_bucket,
            bundle_bucket=self.bundle_bucket,
            base_app_source=self.base_app_source,
            max_workers=self.copy_workers,
            log=log,
            on_copy=on_copy,
        )

    def results_uri(self, key: str) -> str:
        return f"s3://{self.results_bucket}/{key}"

    def results_under(self, prefix: str) -> list[StoredObject]:
        """Every object in the results bucket whose key starts with ``prefix``."""
        pages = self.s3.get_client().get_paginator("list_objects_v2").paginate(Bucket=self.results_bucket,
                                                                              Prefix=prefix)
        return [StoredObject(o["Key"], int(o["Size"]), o["LastModified"]) for page in pages
                for o in page.get("Contents", [])]
