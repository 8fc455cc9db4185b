//! The OpenAPI 3.1 document of the REST API, at `GET /api/v1/openapi.json` (open, like
//! `/healthz`: it describes, it discloses nothing). `tests/api.rs` calls every operation it
//! documents against a live server and checks the responses against these schemas.

use super::WebState;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::{Arc, OnceLock};

pub fn routes() -> Router<Arc<WebState>> {
    Router::new().route("/api/v1/openapi.json", get(serve))
}

async fn serve() -> Json<Value> {
    Json(document().clone())
}

fn error_responses(codes: &[&str]) -> serde_json::Map<String, Value> {
    let text = |c: &str| match c {
        "400" => "Malformed request (not JSON, a field of the wrong type)",
        "401" => "Missing or invalid bearer token",
        "403" => "The token's role may not do this (actions need `admin`)",
        "404" => "No such study",
        "409" => "The study is not in a state that allows this action",
        "422" => "A field or parameter is missing or invalid (named in `field`)",
        "503" => "The audit trail cannot be written, so nothing was done",
        _ => "Error",
    };
    codes
        .iter()
        .map(|c| {
            (
                c.to_string(),
                json!({
                    "description": text(c),
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
                }),
            )
        })
        .collect()
}

fn ok(
    status: &str,
    description: &str,
    schema: &str,
    mut errors: serde_json::Map<String, Value>,
) -> Value {
    errors.insert(
        status.to_string(),
        json!({
            "description": description,
            "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}
        }),
    );
    Value::Object(errors)
}

fn uid_param() -> Value {
    json!({"name": "uid", "in": "path", "required": true,
           "description": "Study Instance UID or accession number",
           "schema": {"type": "string"}})
}

fn action(id: &str, summary: &str, body: Option<(&str, &str)>, status: &str) -> Value {
    let mut op = json!({
        "operationId": id,
        "summary": summary,
        "tags": ["actions"],
        "security": [{"bearer": []}],
        "x-role": "admin",
        "parameters": [uid_param()],
        "responses": ok(status, "Done", "ActionResult",
            error_responses(if body.is_some() { &["400", "401", "403", "404", "409", "422", "503"] } else { &["401", "403", "404", "409", "503"] })),
    });
    if let Some((a, b)) = body {
        op["requestBody"] = json!({
            "required": true,
            "content": {"application/json": {"schema": {
                "type": "object",
                "required": ["by", a],
                "properties": {
                    "by": {"type": "string", "description": "Who decided (name as recorded)", "maxLength": 200},
                    a: {"type": "string", "description": b, "maxLength": 2000}
                }
            }}}
        });
    }
    op
}

/// The document (built once).
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(build)
}

fn build() -> Value {
    let nstr = json!({"type": ["string", "null"]});
    let nint = json!({"type": ["integer", "null"]});
    let mut signals: Vec<Value> = crate::model::CompletionSignal::NAMES
        .iter()
        .map(|n| json!(n))
        .collect();
    signals.push(Value::Null);
    let completed_by = json!({"type": ["string", "null"], "enum": signals,
        "description": "What told readgate the study's images were all in (null while receiving): quiet_period (no new instance for dicom.stable_after_secs), mpps (its MPPS step COMPLETED with every listed instance in), expected_images (as many instances as its order's expected image count, hl7.expected_images_field)"});
    let expected_images = json!({"type": ["integer", "null"],
        "description": "How many images the study's order says to expect (hl7.expected_images_field; the latest matched order that states one); the study is complete once it holds exactly that many"});
    // Apart: one json! for the whole document exceeds the macro recursion limit.
    let prior_row = json!({
        "type": "object",
        "required": ["study_uid", "accession", "date", "modalities", "body_parts", "final_reports", "report_documents", "source", "chosen", "sent_to", "retrieved", "not_retrieved"],
        "properties": {
            "study_uid": {"type": "string"}, "accession": nstr,
            "date": {"type": ["string", "null"], "description": "YYYY-MM-DD, local"},
            "modalities": {"type": "array", "items": {"type": "string"}},
            "body_parts": {"type": "array", "items": {"type": "string"}, "description": "Body Part Examined (0018,0015) of its series, when known (priors of another body part than the study's are not chosen)"},
            "final_reports": {"type": "integer", "description": "Final or corrected HL7 reports on file"},
            "report_documents": {"type": "integer", "description": "SR / encapsulated PDF or CDA reports in the PACS"},
            "source": {"type": "string", "description": "readgate (received here) or pacs:<id>"},
            "chosen": {"type": "boolean", "description": "Among the priors that go with this study: comparable to it, the newest [priors] send_max (sent when a PACS holds it)"},
            "sent_to": {"type": "array", "items": {"type": "string"}, "description": "Destinations readgate sent this prior to (retrieved from the PACS, before a study of the patient)"},
            "retrieved": {"type": ["object", "null"], "description": "The prior's last retrieval from the PACS (to send with a study); null when it was never retrieved", "properties": {"pacs_id": {"type": "string"}, "at": {"type": "integer", "description": "ms since the Unix epoch"}, "instances": {"type": "integer"}, "bytes": {"type": "integer"}}},
            "not_retrieved": {"type": ["string", "null"], "description": "Why the PACS could not deliver this prior when readgate last tried to retrieve it (PRIORS_UNAVAILABLE); null when it never failed or was retrieved since"}
        }
    });
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "readgate REST API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Studies held for missing clinical context (reasons in Japanese and English), \
                the forwarding queue, operator actions, read events, the reading ledger and the audit trail. \
                Authenticate with `Authorization: Bearer <token>` ([[http.tokens]]); reads need a `viewer` or \
                `admin` token, actions an `admin` token. Errors are `{error, field}`. Times are Unix milliseconds."
        },
        "servers": [{"url": "/"}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object", "required": ["error", "field"],
                    "properties": {"error": {"type": "string"}, "field": nstr}
                },
                "Reason": {
                    "type": "object", "required": ["code", "clause", "message_en", "message_ja"],
                    "properties": {
                        "code": {"type": "string"}, "clause": {"type": "string"},
                        "message_en": {"type": "string"}, "message_ja": {"type": "string"}
                    }
                },
                "Study": {
                    "type": "object",
                    "required": ["study_uid", "state", "accession", "modalities", "destination", "facility",
                                 "reasons", "instance_count", "instances_forwarded", "bytes", "attempts",
                                 "first_received_at", "last_received_at", "forwarded_at", "last_error", "updated_at"],
                    "properties": {
                        "study_uid": {"type": "string"},
                        "state": {"type": "string", "enum": crate::model::StudyState::NAMES},
                        "accession": nstr, "modalities": {"type": "string"}, "calling_aes": {"type": "string"},
                        "destination": nstr, "facility": nstr,
                        "reasons": {"type": "array", "items": {"$ref": "#/components/schemas/Reason"}},
                        "instance_count": {"type": "integer"}, "instances_forwarded": {"type": "integer"},
                        "bytes": {"type": "integer"}, "attempts": {"type": "integer"},
                        "first_received_at": {"type": "integer"}, "last_received_at": {"type": "integer"},
                        "forwarded_at": nint, "last_error": nstr, "updated_at": {"type": "integer"},
                        "stream": {"type": ["string", "null"], "enum": [crate::model::StreamState::NAMES[0], crate::model::StreamState::NAMES[1], null],
                                   "description": "Its stream, when its route streamed it ([[routes]] forward): streaming, or stopped when the verdict turned"}
                    }
                },
                "StudyList": {
                    "type": "object", "required": ["studies", "counts"],
                    "properties": {
                        "studies": {"type": "array", "items": {"$ref": "#/components/schemas/Study"}},
                        "counts": {"type": "object", "additionalProperties": {"type": "integer"},
                                   "description": "Studies per state (all of them, not only those listed)"}
                    }
                },
                "StudyDetail": {
                    "allOf": [{"$ref": "#/components/schemas/Study"}],
                    "type": "object",
                    "required": ["timeline", "instances", "decision", "patient_id"],
                    "properties": {
                        "patient_id": nstr,
                        "timeline": {"type": "array", "items": {
                            "type": "object", "required": ["at", "kind", "detail"],
                            "properties": {"at": {"type": "integer"}, "kind": {"type": "string"}, "detail": {"type": "string"}}
                        }},
                        "time_to_reader_secs": {"type": ["number", "null"], "description": "From the study's last instance received to its last instance acknowledged by the destination (null until forwarded); the same as readgate_time_to_reader_seconds"},
                        "steps": {"type": "array", "description": "The modality's performed procedure steps for this study (MPPS), oldest first", "items": {
                            "type": "object", "required": ["mpps_uid", "status", "calling_ae", "instances", "received", "created_at", "updated_at"],
                            "properties": {
                                "mpps_uid": {"type": "string"}, "study_uid": nstr,
                                "status": {"type": "string", "enum": ["IN PROGRESS", "COMPLETED", "DISCONTINUED"]},
                                "calling_ae": {"type": "string"},
                                "instances": {"type": "integer", "description": "Instances the step lists"},
                                "received": {"type": "integer", "description": "Of those, how many readgate has received"},
                                "created_at": {"type": "integer"}, "updated_at": {"type": "integer"}
                            }
                        }},
                        "instances": {"type": "array", "items": {
                            "type": "object", "required": ["sop_uid", "sop_class_uid", "transfer_syntax", "state", "last_status", "last_error"],
                            "properties": {
                                "sop_uid": {"type": "string"}, "sop_class_uid": {"type": "string"},
                                "transfer_syntax": {"type": "string"}, "state": {"type": "string"},
                                "last_status": nint, "last_error": nstr
                            }
                        }},
                        "decision": {
                            "type": "object", "required": ["verdict", "reasons", "evaluation", "context", "evaluated_at", "audit_seq"],
                            "properties": {
                                "verdict": {"type": ["string", "null"], "description": "PASS, HELD, FORWARDED_INCOMPLETE, RELEASED_OVERRIDE"},
                                "reasons": {"type": "array", "items": {"$ref": "#/components/schemas/Reason"}},
                                "evaluation": {"description": "Every check with its verdict and the sources of its facts"},
                                "context": {"description": "The order context the study was forwarded (tagged) with"},
                                "evaluated_at": nint, "audit_seq": nint
                            }
                        },
                        "priors": {
                            "type": ["object", "null"], "description": "The patient's prior studies the decision saw (null before a decision), newest first, and how each [[pacs]] answered",
                            "properties": {
                                "priors": {"type": "array", "items": prior_row},
                                "pacs": {"type": "array", "items": {
                                    "type": "object", "required": ["outcome", "pacs"],
                                    "properties": {
                                        "outcome": {"type": "string", "enum": ["answered", "failed", "not_yet"]},
                                        "pacs": {"type": "string"}, "at": {"type": "integer"},
                                        "found": {"type": "integer"}, "error": {"type": "string"}
                                    }
                                }}
                            }
                        }
                    }
                },
                "Queue": {
                    "type": "object", "required": ["destinations"],
                    "properties": {"destinations": {"type": "array", "items": {
                        "type": "object",
                        "required": ["destination", "depth", "instances_waiting", "last_success_at", "failures"],
                        "properties": {
                            "destination": {"type": "string"},
                            "depth": {"type": "integer", "description": "Studies queued"},
                            "instances_waiting": {"type": "integer"},
                            "last_success_at": nint,
                            "failures": {"type": "array", "items": {
                                "type": "object", "required": ["study_uid", "state", "attempts", "error"],
                                "properties": {"study_uid": {"type": "string"}, "accession": nstr, "state": {"type": "string"},
                                               "attempts": {"type": "integer"}, "error": nstr, "updated_at": {"type": "integer"}}
                            }}
                        }
                    }}}
                },
                "ActionResult": {
                    "type": "object", "required": ["study_uid", "state"],
                    "properties": {"study_uid": {"type": "string"}, "state": {"type": "string"}, "verdict": {"type": "string"}}
                },
                "ReadEventCreated": {
                    "type": "object", "required": ["id", "study_uid", "action", "at", "resolution"],
                    "properties": {"id": {"type": "integer"}, "study_uid": {"type": "string"}, "accession": nstr,
                                   "action": {"type": "string"}, "at": {"type": "string"}, "resolution": {"type": "object"}}
                },
                "AuditEntries": {
                    "type": "object", "required": ["entries"],
                    "properties": {"entries": {"type": "array", "items": {
                        "type": "object",
                        "required": ["seq", "at", "at_ms", "actor", "kind", "study_uid", "accession", "detail", "prev_hash", "hash"],
                        "properties": {
                            "seq": {"type": "integer"}, "at": {"type": "string"}, "at_ms": {"type": "integer"},
                            "boot_id": {"type": "string"}, "mono_ns": {"type": "integer"},
                            "actor": {"type": "string"}, "kind": {"type": "string"},
                            "study_uid": nstr, "accession": nstr, "detail": {"type": "string"},
                            "prev_hash": {"type": "string"}, "hash": {"type": "string"}
                        }
                    }}}
                },
                "Verification": {
                    "type": "object", "required": ["ok", "entries", "first_seq", "last_seq", "head_hash", "finding", "clock_steps", "notes"],
                    "properties": {
                        "ok": {"type": "boolean", "description": "No entry changed, deleted or inserted"},
                        "entries": {"type": "integer"}, "first_seq": nint, "last_seq": nint, "head_hash": nstr,
                        "finding": {"type": ["object", "null"]}, "clock": {"type": "array"},
                        "clock_steps": {"type": "integer"}, "clock_synchronised": {"type": ["boolean", "null"]},
                        "notes": {"type": "array", "items": {"type": "string"}}, "elapsed": {"type": "number"}
                    }
                },
                "Health": {
                    "type": "object", "required": ["status", "service"],
                    "properties": {"status": {"type": "string"}, "service": {"type": "string"}}
                },
                "Report": {"type": "object", "required": ["month"], "properties": {"month": {"type": "string"}}}
            }
        },
        "paths": {
            "/healthz": {"get": {
                "operationId": "health", "summary": "Liveness (no token)", "tags": ["system"],
                "responses": {"200": {"description": "Up", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}}}
            }},
            "/api/v1/studies": {"get": {
                "operationId": "listStudies", "summary": "Studies, newest first, with state and reasons",
                "tags": ["studies"], "security": [{"bearer": []}],
                "parameters": [
                    {"name": "state", "in": "query", "required": false, "schema": {"type": "string", "enum": crate::model::StudyState::NAMES}},
                    {"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 200}}
                ],
                "responses": ok("200", "Studies", "StudyList", error_responses(&["401", "422"]))
            }},
            "/api/v1/studies/{uid}": {"get": {
                "operationId": "getStudy", "summary": "A study: timeline, instances, decision with its checks and tags",
                "tags": ["studies"], "security": [{"bearer": []}],
                "parameters": [uid_param()],
                "responses": ok("200", "The study", "StudyDetail", error_responses(&["401", "404"]))
            }},
            "/api/v1/studies/{uid}/release": {"post": action("releaseStudy",
                "Release a held study (RELEASED_OVERRIDE) with a written justification",
                Some(("justification", "Why it may leave without the missing context")), "200")},
            "/api/v1/studies/{uid}/reject": {"post": action("rejectStudy",
                "Reject a held or failed study for good (its instances leave the spool)",
                Some(("reason", "Why it must not be sent")), "200")},
            "/api/v1/studies/{uid}/reevaluate": {"post": action("reevaluateStudy",
                "Evaluate a held study again now (e.g. after fixing the policy)", None, "202")},
            "/api/v1/studies/{uid}/retry": {"post": action("retryStudy",
                "Put a failed study back in the queue", None, "200")},
            "/api/v1/queue": {"get": {
                "operationId": "getQueue", "summary": "Per destination: depth, last success, failures",
                "tags": ["queue"], "security": [{"bearer": []}],
                "responses": ok("200", "The queue", "Queue", error_responses(&["401"]))
            }},
            "/api/v1/read-events": {"post": {
                "operationId": "postReadEvent", "summary": "A reading system reports a read event (ledger)",
                "tags": ["ledger"], "security": [{"bearer": []}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["reader_id", "action", "at"],
                    "properties": {
                        "study_uid": {"type": "string"}, "accession": {"type": "string"},
                        "reader_id": {"type": "string"},
                        "action": {"type": "string", "enum": ["opened", "closed", "preliminary", "final", "confirmed", "addendum"]},
                        "workstation": {"type": "string"}, "client_ip": {"type": "string"},
                        "at": {"type": "string", "description": "RFC 3339 with offset, e.g. 2026-06-01T09:30:00+09:00"}
                    }
                }}}},
                "responses": ok("201", "Recorded", "ReadEventCreated", error_responses(&["400", "401", "404", "422"]))
            }},
            "/api/v1/reports/{month}": {"get": {
                "operationId": "getReport", "summary": "The month's reading-ledger report",
                "tags": ["ledger"], "security": [{"bearer": []}],
                "parameters": [
                    {"name": "month", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"}},
                    {"name": "format", "in": "query", "required": false, "schema": {"type": "string", "enum": ["json", "csv", "html"], "default": "json"}},
                    {"name": "facility", "in": "query", "required": false, "schema": {"type": "string"}},
                    {"name": "lang", "in": "query", "required": false, "schema": {"type": "string", "enum": ["ja", "en"], "default": "ja"}}
                ],
                "responses": {
                    "200": {"description": "The report", "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Report"}},
                        "text/csv": {"schema": {"type": "string"}},
                        "text/html": {"schema": {"type": "string"}}
                    }},
                    "401": error_responses(&["401"])["401"],
                    "422": error_responses(&["422"])["422"]
                }
            }},
            "/api/v1/audit": {"get": {
                "operationId": "searchAudit", "summary": "Audit trail entries, newest first",
                "tags": ["audit"], "security": [{"bearer": []}],
                "parameters": [
                    {"name": "kind", "in": "query", "required": false, "schema": {"type": "string"}},
                    {"name": "study", "in": "query", "required": false, "schema": {"type": "string"}, "description": "Study UID or accession"},
                    {"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 100}}
                ],
                "responses": ok("200", "Entries", "AuditEntries", error_responses(&["401", "422", "503"]))
            }},
            "/api/v1/audit/verify": {"get": {
                "operationId": "verifyAudit", "summary": "Walk the hash chain",
                "tags": ["audit"], "security": [{"bearer": []}],
                "responses": ok("200", "Verification", "Verification", error_responses(&["401", "503"]))
            }},
            "/api/v1/openapi.json": {"get": {
                "operationId": "openapi", "summary": "This document (no token)", "tags": ["system"],
                "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object", "required": ["openapi", "paths"]}}}}}
            }}
        }
    });
    // Added afterwards: the document's one json! is at the macro recursion limit.
    let mut add = |schema: &str, key: &str, value: Value| {
        if let Some(Value::Object(p)) =
            doc.pointer_mut(&format!("/components/schemas/{schema}/properties"))
        {
            p.insert(key.to_string(), value);
        }
    };
    add("Study", "completed_by", completed_by);
    add("StudyDetail", "expected_images", expected_images);
    doc
}
