"""The LLM triage judge against a local OpenAI-compatible test server (127.0.0.1): replies, retries after 5xx,
timeouts, malformed replies, and nothing sent without an endpoint."""

import json

import pytest

from neurovfm.labels.llm import LLMError, map_reports
from neurovfm.reportgen.triage import LLMJudge, RuleJudge, endpoint_client, judges_from_config, parse_triage
from reportgen_fixtures import tiny_config
from test_labels_llm import Server


def judge(endpoint, **kw):
    spec = {
        "name": "j",
        "endpoint": endpoint,
        "model": "m",
        "api_key_env": None,
        "timeout_s": kw.get("timeout", 5),
        "retries": kw.get("retries", 2),
        "backoff_s": 0.01,
        "max_workers": 1,
    }
    return LLMJudge("j", endpoint_client(spec, kw.get("cache")))


def test_reply_is_parsed_and_prompt_carries_findings_and_indication():
    with Server([(200, json.dumps({"triage": "Urgent", "justification": "blood"}), 0)]) as srv:
        level = judge(srv.endpoint).triage(["Acute hemorrhage."], "Fall.", "CT")
    assert level == "urgent"
    user = srv.requests[0]["body"]["messages"][1]["content"]
    assert "Acute hemorrhage." in user and "Fall." in user


def test_retries_after_server_errors_then_succeeds():
    script = [(503, "busy", 0), (500, "oops", 0), (200, '{"triage": "routine"}', 0)]
    with Server(script) as srv:
        assert judge(srv.endpoint, retries=2).triage(["x"], None, "MR") == "routine"
    assert len(srv.requests) == 3


def test_timeout_is_retried_then_reported():
    with Server([(200, '{"triage": "routine"}', 1.0)] * 2) as srv:
        with pytest.raises(LLMError, match="timeout"):
            judge(srv.endpoint, timeout=0.2, retries=1).triage(["x"], None, "MR")


@pytest.mark.parametrize("content", ["not json at all", '{"triage": "maybe"}', '["urgent"]', '{"level": "urgent"}'])
def test_malformed_replies_raise_and_are_recorded(content):
    with Server([(200, content, 0)]) as srv:
        j = judge(srv.endpoint, retries=0)
        results = map_reports(lambda f: j.triage(f, None, "CT"), [["x"]], 1)
    assert results[0][0] is None and "LLMError" in results[0][1]


def test_cache_answers_repeat_questions_without_a_request(tmp_path):
    with Server([(200, '{"triage": "unremarkable"}', 0)]) as srv:
        j = judge(srv.endpoint, cache=tmp_path)
        assert j.triage([], "Headache.", "CT") == "unremarkable"
        assert j.triage([], "Headache.", "CT") == "unremarkable"
    assert len(srv.requests) == 1


def test_only_configured_endpoints_become_judges(tmp_path):
    cfg = tiny_config(tmp_path)["reportgen"]
    cfg["triage"]["judges"] = [
        {
            "name": "off",
            "endpoint": None,
            "model": "m",
            "api_key_env": None,
            "timeout_s": 1,
            "retries": 0,
            "backoff_s": 0.0,
            "max_workers": 1,
        }
    ]
    judges = judges_from_config(cfg, tmp_path)
    assert [type(j) for j in judges] == [RuleJudge]
    assert parse_triage('```json\n{"triage": "ROUTINE"}\n```') == "routine"


# -- acuity modifiers of the rule judge (issue 17), one group per class ------------------------------------------
@pytest.fixture(scope="module")
def rule_judge():
    from neurovfm.config import default_config

    return RuleJudge.from_config(default_config()["reportgen"]["triage"])


def test_expected_postoperative_change_is_not_urgent(rule_judge):
    assert rule_judge.triage(["Expected postoperative pneumocephalus after left craniotomy."], None, "CT") == "routine"
    assert (
        rule_judge.triage(
            ["Small amount of postoperative blood products in the right frontal resection bed."], None, "CT"
        )
        == "routine"
    )
    # the modifier must qualify the urgent finding itself, not a neighbour in the sentence
    assert rule_judge.triage(["Postoperative changes of a left craniotomy and pneumocephalus."], None, "CT") == "urgent"


def test_stable_or_treated_disease_is_not_urgent(rule_judge):
    assert rule_judge.triage(["Stable left frontal intraparenchymal hematoma."], None, "CT") == "routine"
    assert rule_judge.triage(["Unchanged small right temporal contusion."], None, "CT") == "routine"
    assert rule_judge.triage(["Treated right temporal glioblastoma with a resection cavity."], None, "MR") == "routine"


def test_named_normal_variant_is_not_urgent(rule_judge):
    assert rule_judge.acuity("cavum septum pellucidum, a normal variant") == "variant"
    assert rule_judge.triage(["Cavum septum pellucidum, a normal variant."], None, "CT") == "unremarkable"


def test_upgrade_cues_win_over_downgrade_cues(rule_judge):
    assert rule_judge.triage(["Chronic right subdural hematoma."], None, "CT") == "routine"
    assert rule_judge.triage(["Acute on chronic right subdural hematoma."], None, "CT") == "urgent"
    assert (
        rule_judge.triage(["New hemorrhage in the postoperative left frontal resection bed."], None, "CT") == "urgent"
    )
    assert rule_judge.triage(["Left parietal hematoma, increased since the prior study."], None, "CT") == "urgent"
    assert rule_judge.acuity("stable, no new hemorrhage") == "upgrade"  # the judge only sees positive mentions


def test_llm_prompt_states_the_configured_acuity_modifiers(tmp_path):
    cfg = tiny_config(tmp_path)["reportgen"]
    cfg["triage"]["upgrade_cues"] = ["enlarging"]
    cfg["triage"]["downgrade_cues"] = ["postoperative"]
    cfg["triage"]["variant_cues"] = ["normal variant"]
    with Server([(200, '{"triage": "routine"}', 0)]) as srv:
        cfg["triage"]["judges"] = [
            {
                "name": "j",
                "endpoint": srv.endpoint,
                "model": "m",
                "api_key_env": None,
                "timeout_s": 5,
                "retries": 0,
                "backoff_s": 0.0,
                "max_workers": 1,
            }
        ]
        judges = judges_from_config(cfg, None)
        assert judges[1].triage(["Pneumocephalus after surgery."], None, "CT") == "routine"
    system = srv.requests[0]["body"]["messages"][0]["content"]
    assert "'enlarging'" in system and "'postoperative'" in system and "'normal variant'" in system


def test_acuity_cues_are_schema_checked(tmp_path):
    from neurovfm.config import ConfigError, default_config

    with pytest.raises(ConfigError, match="upgrade_cues"):
        default_config(reportgen={"triage": {"upgrade_cues": ["new", "3 mm"]}})
