"""Publishing trained models: the validator's model hash, file selection, Hub and local publishers.

A submission is ``<namespace>/<expected_repo_name>``, public only after a complete, verified upload, never
pushed to again, with the model hash computed locally over exactly the uploaded files (protocol.md §4.6, §5.3).
"""

from godminer.publish.base import Publisher, PublishError, PublishResult, select_upload_files
from godminer.publish.hub import HubPublisher
from godminer.publish.local import LocalPublisher
from godminer.publish.model_hash import hashed_files, is_valid_model_hash, model_hash

__all__ = [
    "HubPublisher",
    "LocalPublisher",
    "PublishError",
    "PublishResult",
    "Publisher",
    "hashed_files",
    "is_valid_model_hash",
    "model_hash",
    "select_upload_files",
]
