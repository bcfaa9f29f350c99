"""Buckets and S3 access for bundles and results, as one Dagster resource."""

from collections.abc import Callable, Mapping

import dagster as dg

from flip_pipelines import settings
from flip_pipelines.domain.enums import FLBackend
from flip_pipelines.domain.net_options import base_app_sources
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

    def bundle_store(self, log: Callable[[str], None] | None = None, on_copy: Callable[[], None] | None = None,
                     base_app_source: str | None = None) -> BundleStore:
        """A bundle store on this resource's S3 client, bundling from ``base_app_source`` (default: this
        resource's); ``log`` receives progress lines, ``on_copy`` is called before each object is copied (the crash
        drills' hook)."""
        return BundleStore(
            self.s3.get_client(),
            model_bucket=self.model_bucket,
            bundle_bucket=self.bundle_bucket,
            base_app_source=base_app_source or self.base_app_source,
            max_workers=self.copy_workers,
            log=log,
            on_copy=on_copy,
        )

    def base_app_source_of(self, net: str) -> str:
        """Where net ``net``'s jobs take their base applications from: its own ``base_app_source`` in
        FLIP_NET_OPTIONS, else this resource's.

        Raises:
            InvalidInputError: FLIP_NET_OPTIONS is malformed.
        """
        return settings.net_options(net).base_app_source or self.base_app_source

    def base_app_sources(self, nets: Mapping[str, FLBackend]) -> dict[FLBackend, tuple[str, ...]]:
        """Per backend, every base application source its nets (name → backend) bundle from: what a model's
        check plans against.

        Raises:
            InvalidInputError: FLIP_NET_OPTIONS is malformed.
        """
        return base_app_sources(nets, settings.all_net_options(), self.base_app_source)

    def results_uri(self, key: str) -> str:
        return f"s3://{self.results_bucket}/{key}"

    def results_under(self, prefix: str) -> list[StoredObject]:
        """Every object in the results bucket whose key starts with ``prefix``."""
        pages = self.s3.get_client().get_paginator("list_objects_v2").paginate(Bucket=self.results_bucket,
                                                                              Prefix=prefix)
        return [StoredObject(o["Key"], int(o["Size"]), o["LastModified"]) for page in pages
                for o in page.get("Contents", [])]
