"""The OpenAPI 3.1 document, built from the same msgspec Structs that decode and encode the wire.

The verification route is an ASGI-level route (see app/routes/verification.py), which Litestar
does not describe, so the whole document is assembled here explicitly; a test checks that every
served route is described.
"""

from __future__ import annotations

from typing import Any

import msgspec

from app.problems import PROBLEM_CODES, PROBLEM_MEDIA_TYPE
from app.wire import (
    REQUEST_EXAMPLE,
    BulkRequest,
    BulkResponse,
    Problem,
    VerificationRequest,
    VerificationResponse,
)

REF = "#/components/schemas/{name}"


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": REF.format(name="Problem")}}},
    }


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def build_openapi(version: str = "1.1.1") -> dict[str, Any]:
    _, components = msgspec.json.schema_components(
        (VerificationRequest, VerificationResponse, Problem, BulkRequest, BulkResponse), ref_template=REF
    )
    components["Problem"]["properties"]["code"]["enum"] = sorted(PROBLEM_CODES)
    header = {"in": "header", "required": True, "schema": {"type": "string"}}
    verify_op = {
        "operationId": "verifyPayee",
        "security": [{"bearer": ["vop:verify"]}],
        "tags": ["verification"],
        "summary": "Verify a payee name or organisation identifier against an IBAN held here",
        "description": (
            "Answers `partyNameMatch` (MTCH, CMTC with `matchedName`, NMTC, NOAP) for a name, or "
            "`partyIdMatch` (MTCH, NMTC, NOAP) when `party.identification` is given (the name is then "
            "ignored). NOAP for closed, blocked and unknown accounts. `matchedName` is present if and "
            "only if the answer is CMTC."
        ),
        "parameters": [
            {
                **header,
                "name": "X-Request-ID",
                "description": "UUID of this request; echoed",
                "schema": {"type": "string", "format": "uuid"},
            },
            {
                **header,
                "name": "X-Request-Timestamp",
                "description": "RFC 3339 UTC time the request was sent (e.g. 2026-01-31T12:00:00Z)",
                "schema": {"type": "string", "format": "date-time"},
            },
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": REF.format(name="VerificationRequest")},
                    "examples": {"nameCheck": {"summary": "name check", "value": REQUEST_EXAMPLE}},
                }
            },
        },
        "responses": {
            "200": {
                **_json("The answer", {"$ref": REF.format(name="VerificationResponse")}),
                "headers": {
                    "X-Request-ID": {"schema": {"type": "string"}},
                    "X-Response-Timestamp": {"schema": {"type": "string", "format": "date-time"}},
                },
            },
            "400": _problem("FORMAT_ERROR or TIMESTAMP_INVALID: the request breaks the API's rules"),
            "401": _problem("CLIENT_INVALID: missing or invalid bearer token"),
            "403": _problem(
                "CLIENT_INVALID (scope) or CLIENT_INCONSISTENT (requestingAgent is not the client)"
            ),
            "429": _problem("RATE_LIMITED: over the client's rate limit (Retry-After)"),
            "405": _problem("METHOD_NOT_ALLOWED: only POST"),
            "413": _problem("FORMAT_ERROR: the body exceeds the size limit"),
            "500": _problem("INTERNAL_ERROR: an unexpected failure (logged)"),
            "503": _problem(
                "SERVICE_UNAVAILABLE: index not loaded, at capacity, or deadline exceeded (Retry-After)"
            ),
        },
    }
    components["BulkRequest"]["properties"]["checks"] = {
        "type": "array",
        "minItems": 1,
        "items": {"$ref": REF.format(name="VerificationRequest")},
    }
    bulk_op = {
        "operationId": "verifyPayeesBulk",
        "security": [{"bearer": ["vop:bulk"]}],
        "tags": ["verification"],
        "summary": "Verify many payees at once (a payer's own channels, not inter-PSP)",
        "description": (
            "Up to VOP_BULK_MAX_ITEMS checks (default 10,000), answered in request order. An item "
            "that is invalid gets `error` (a problem document) and the others are still answered."
        ),
        "parameters": verify_op["parameters"],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": REF.format(name="BulkRequest")},
                    "examples": {
                        "twoChecks": {"summary": "two checks", "value": {"checks": [REQUEST_EXAMPLE] * 2}}
                    },
                }
            },
        },
        "responses": {
            "200": _json("One result per check, in order", {"$ref": REF.format(name="BulkResponse")}),
            "400": _problem("FORMAT_ERROR or TIMESTAMP_INVALID for the request as a whole"),
            "413": _problem("FORMAT_ERROR: more checks than the limit, or the body exceeds the size limit"),
            "503": _problem("SERVICE_UNAVAILABLE: index not loaded, at capacity, or deadline exceeded"),
        },
    }
    status = {"type": "object", "additionalProperties": True}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Verification of Payee responder",
            "version": version,
            "description": "EPC VoP inter-PSP API (responding PSP). Errors are RFC 9457 problem JSON "
            "with a scheme `code`.",
        },
        "paths": {
            "/vop/v1/payee-verifications": {"post": verify_op},
            "/vop/v1/payee-verifications/bulk": {"post": bulk_op},
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "tags": ["operations"],
                    "summary": "Liveness: the process answers",
                    "responses": {"200": _json("alive", status)},
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "readyz",
                    "tags": ["operations"],
                    "summary": "Readiness: 200 once the index is loaded, 503 before",
                    "responses": {
                        "200": _json("ready", status),
                        "503": _json("loading or failed (Retry-After)", status),
                    },
                }
            },
            "/vop/v1/problems/{code}": {
                "get": {
                    "operationId": "problemType",
                    "tags": ["operations"],
                    "summary": "What a problem code means",
                    "parameters": [
                        {
                            "in": "path",
                            "name": "code",
                            "required": True,
                            "schema": {"type": "string", "enum": sorted(PROBLEM_CODES)},
                        }
                    ],
                    "responses": {
                        "200": _json("the code's title and description", status),
                        "404": _problem("NOT_FOUND: no such code"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "tags": ["operations"],
                    "summary": "Prometheus exposition (all workers of this server summed)",
                    "responses": {
                        "200": {
                            "description": "text format 0.0.4",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/admin/index": {
                "get": {
                    "operationId": "adminIndex",
                    "tags": ["admin"],
                    "security": [{"bearer": ["vop:admin"]}],
                    "summary": "Index status: version, accounts, source, feed position and staleness",
                    "responses": {
                        "200": _json("status", status),
                        "401": _problem("CLIENT_INVALID: missing or invalid bearer token"),
                        "403": _problem("CLIENT_INVALID: the token lacks vop:admin"),
                    },
                }
            },
            "/admin/index/reload": {
                "post": {
                    "operationId": "adminReload",
                    "tags": ["admin"],
                    "security": [{"bearer": ["vop:admin"]}],
                    "summary": "Ask the index feed for a full reload (the current index serves meanwhile)",
                    "responses": {
                        "202": _json("reload requested", status),
                        "401": _problem("CLIENT_INVALID: missing or invalid bearer token"),
                        "403": _problem("CLIENT_INVALID: the token lacks vop:admin"),
                        "404": _problem("NOT_FOUND: a snapshot file has no feed to reload"),
                    },
                }
            },
            "/schema/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "tags": ["operations"],
                    "summary": "This document",
                    "responses": {"200": _json("OpenAPI 3.1", status)},
                }
            },
        },
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "scopes in the `scope` claim: vop:verify, vop:bulk, vop:admin; "
                    "the PSP's BIC in the `bic` claim",
                },
            },
        },
    }
