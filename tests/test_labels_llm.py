"""LLM client against a local OpenAI-compatible test server (127.0.0.1, ephemeral port)."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from neurovfm.labels.llm import (
    LLMClient,
    LLMConfigError,
    LLMError,
    LLMExtractor,
    client_from_config,
    map_reports,
    parse_json_reply,
)
from neurovfm.labels.ontology import load_ontology

CT = load_ontology("CT")


def good_reply(positives=("acute_subdural_hematoma",), fence=False, drop=None, extra=None):
    table = {
        n: {"present": "yes" if n in positives else "no", "rationale": "stated" if n in positives else "not stated"}
        for n in CT.names
        if n != drop
    }
    if extra:
        table[extra] = {"present": "no", "rationale": ""}
    text = json.dumps({"diagnoses": table})
    return f"Here you go:\n```json\n{text}\n```" if fence else text


class Server:
    """Serves a scripted list of (status, content, delay_s); records every request body."""

    def __init__(self, script):
        self.script, self.requests = list(script), []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                status, content, delay = outer.script.pop(0) if outer.script else (500, "script exhausted", 0)
                time.sleep(delay)
                payload = (
                    json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]})
                    if status == 200
                    else json.dumps({"error": content})
                ).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def log_message(self, *args):
                """Keep the test output free of the server's access log."""

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def client(srv, tmp_path, **kw):
    args = dict(
        endpoint=srv.endpoint,
        model="local-model",
        api_key="sk-test",
        timeout_s=2.0,
        retries=2,
        backoff_s=0.01,
        cache_dir=tmp_path / "cache",
    )
    args.update(kw)
    return LLMClient(**args)


REPORT = "FINDINGS: Acute left subdural hematoma. IMPRESSION: Acute left SDH."


def test_good_reply_and_request_shape(tmp_path):
    with Server([(200, good_reply(fence=True), 0)]) as srv:
        res = LLMExtractor(client(srv, tmp_path)).extract(REPORT, "CT")
    assert res["acute_subdural_hematoma"]["present"] and res["intracranial_hemorrhage"]["present"]
    assert res["intracranial_hemorrhage"]["status"] == "implied"  # parent closed by the ontology
    assert sum(v["present"] for v in res.values()) == 2
    req = srv.requests[0]
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sk-test"
    assert req["body"]["model"] == "local-model" and req["body"]["response_format"] == {"type": "json_object"}
    assert "subacute_chronic_subdural_hematoma" in req["body"]["messages"][0]["content"]
    assert REPORT in req["body"]["messages"][1]["content"]


def test_malformed_and_incomplete_replies_are_errors(tmp_path):
    with Server(
        [
            (200, "I think there is a subdural hematoma.", 0),
            (200, good_reply(drop="sinusitis"), 0),
            (200, good_reply(extra="made_up_label"), 0),
        ]
    ) as srv:
        ex = LLMExtractor(client(srv, tmp_path))
        for expected in ("no JSON object", "missing ['sinusitis']", "unknown ['made_up_label']"):
            with pytest.raises(LLMError, match=expected.replace("[", r"\[").replace("]", r"\]")):
                ex.extract(REPORT + expected, "CT")  # distinct text: no cache reuse
    assert not list((tmp_path / "cache").rglob("*.json"))  # invalid replies are not cached


def test_retry_after_500_then_success(tmp_path):
    with Server([(500, "overloaded", 0), (429, "slow down", 0), (200, good_reply(), 0)]) as srv:
        res = LLMExtractor(client(srv, tmp_path)).extract(REPORT, "CT")
    assert res["acute_subdural_hematoma"]["present"] and len(srv.requests) == 3


def test_slow_reply_times_out_then_gives_up(tmp_path):
    with Server([(200, good_reply(), 1.0)] * 2) as srv:
        t0 = time.monotonic()
        with pytest.raises(LLMError, match="timeout"):
            LLMExtractor(client(srv, tmp_path, timeout_s=0.3, retries=1)).extract(REPORT, "CT")
        assert time.monotonic() - t0 < 5
    assert len(srv.requests) == 2


def test_cache_hit_sends_no_second_request(tmp_path):
    with Server([(200, good_reply(), 0)]) as srv:
        a = LLMExtractor(client(srv, tmp_path)).extract(REPORT, "CT")
        b = LLMExtractor(client(srv, tmp_path)).extract(REPORT, "CT")
    assert a == b and len(srv.requests) == 1


def test_map_reports_isolates_failures(tmp_path):
    with Server([(200, good_reply(), 0), (200, "not json", 0)]) as srv:
        ex = LLMExtractor(client(srv, tmp_path, retries=0))
        out = map_reports(lambda t: ex.extract(t, "CT"), ["report one", "report two"], max_workers=1)
    assert out[0][1] is None and out[0][0]["acute_subdural_hematoma"]["present"]
    assert out[1][0] is None and "LLMError" in out[1][1]


def test_no_endpoint_is_a_clear_error(tmp_path):
    with pytest.raises(LLMConfigError, match="endpoint"):
        client_from_config({"endpoint": None, "model": "m", "api_key_env": "X"}, tmp_path)


def test_parse_json_reply_variants():
    assert parse_json_reply('```json\n{"a": 1}\n```') == {"a": 1}
    assert parse_json_reply('Sure! {"a": {"b": 2}} Hope this helps.') == {"a": {"b": 2}}
    with pytest.raises(LLMError):
        parse_json_reply("[1, 2]")


def test_server_without_json_mode_falls_back(tmp_path):
    with Server([(400, "response_format is not supported", 0), (200, good_reply(), 0)]) as srv:
        res = LLMExtractor(client(srv, tmp_path)).extract(REPORT, "CT")
    assert res["acute_subdural_hematoma"]["present"]
    assert "response_format" in srv.requests[0]["body"] and "response_format" not in srv.requests[1]["body"]


def test_map_reports_errors_carry_no_report_text(tmp_path):
    """An exception whose message quotes the report (PHI) becomes a code and fixed text; the raw message is kept
    under the private folder only."""
    secret = "Patient DOE^JANE MRN 12345678 has a left subdural"

    def fails(text):
        raise ValueError(f"cannot parse: {text}")

    out = map_reports(fails, [secret], max_workers=1, private_dir=tmp_path, stage="labels")
    assert out[0][0] is None and "ValueError" in out[0][1]
    assert "DOE" not in out[0][1] and "12345678" not in out[0][1]
    assert "DOE^JANE" in (tmp_path / "errors" / "labels.log").read_text()
