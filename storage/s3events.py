"""S3 event records in MinIO's bucket-notification format: how an object's arrival is described and read back.

Intake writes one into the chain of custody for every evidence item (`received`), whether the object came
through the API, a MinIO webhook or the reconciliation sweep; a webhook delivers the same shape. Keys are
URL-encoded in the record as MinIO does (`quote_plus`, slashes kept).
"""

from __future__ import annotations

import urllib.parse
import uuid
from typing import Any

from storage.tables import utcnow


def object_created_record(*, bucket: str, key: str, version_id: str, size: int, etag: str = "",
                          principal: str, event_name: str = "s3:ObjectCreated:Put",
                          content_type: str = "", source: str = "locard") -> dict[str, Any]:
    """An S3 event record in MinIO's bucket-notification format."""
    return {
        "eventVersion": "2.0",
        "eventSource": "minio:s3" if source == "minio" else f"{source}:s3",
        "awsRegion": "",
        "eventTime": utcnow().strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "eventName": event_name,
        "userIdentity": {"principalId": principal},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "locard-intake",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {"key": urllib.parse.quote_plus(key, safe="/"), "size": size, "eTag": etag,
                       "contentType": content_type, "versionId": version_id, "sequencer": uuid.uuid4().hex[:16]},
        },
    }


def parse_object_created(record: dict[str, Any]) -> tuple[str, str, str, int] | None:
    """(bucket, key, version, size) of an `s3:ObjectCreated:*` record; None for other events."""
    if not str(record.get("eventName", "")).startswith("s3:ObjectCreated:"):
        return None
    s3 = record["s3"]
    key = urllib.parse.unquote_plus(s3["object"]["key"])
    return s3["bucket"]["name"], key, str(s3["object"].get("versionId") or ""), int(s3["object"].get("size") or 0)
