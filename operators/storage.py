"""Object-store options in the two dialects the job speaks: s3fs (reading, summaries) and Lance (tables).

Users may write either dialect in `source.storage_options` / `sink.storage_options`;
credentials are best left out of both and taken from the environment / AWS chain.
"""

from __future__ import annotations

from typing import Any

# s3fs / boto-style name -> Lance (object_store) name
_TO_LANCE = {
    "endpoint_url": "aws_endpoint",
    "endpoint": "aws_endpoint",
    "key": "aws_access_key_id",
    "secret": "aws_secret_access_key",
    "token": "aws_session_token",
    "region": "aws_region",
    "region_name": "aws_region",
}


def lance_storage_options(options: dict[str, Any]) -> dict[str, str]:
    """Options for Lance / LanceDB; plain-HTTP endpoints (local test servers) get allow_http."""
    out = {_TO_LANCE.get(k, k): str(v) for k, v in options.items() if k != "client_kwargs"}
    client = options.get("client_kwargs") or {}
    for k in ("endpoint_url", "region_name"):
        if k in client:
            out.setdefault(_TO_LANCE[k], str(client[k]))
    if out.get("aws_endpoint", "").startswith("http://"):
        out.setdefault("allow_http", "true")
    return out


def s3fs_storage_options(options: dict[str, Any]) -> dict[str, Any]:
    """Options for fsspec/s3fs, from either dialect."""
    lance = lance_storage_options(options)
    out: dict[str, Any] = {}
    client: dict[str, Any] = dict(options.get("client_kwargs") or {})
    for k, v in lance.items():
        if k == "aws_endpoint":
            client["endpoint_url"] = v
        elif k == "aws_region":
            client["region_name"] = v
        elif k == "aws_access_key_id":
            out["key"] = v
        elif k == "aws_secret_access_key":
            out["secret"] = v
        elif k == "aws_session_token":
            out["token"] = v
    if client:
        out["client_kwargs"] = client
    return out


def fsspec_options(uri: str, options: dict[str, Any]) -> dict[str, Any]:
    """fsspec options for `uri`: the s3fs dialect for s3://, as given for other remote stores, none locally."""
    if uri.startswith(("s3://", "s3a://")):
        return s3fs_storage_options(options)
    return dict(options) if "://" in uri else {}
