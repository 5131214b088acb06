"""What every adapter shares: the validation frame, and how it reads (or refuses to read)
an upstream answer."""

from __future__ import annotations

import random

import pytest

from app.providers.base import Adapter, UnreadableAnswer
from app.providers.http import UpstreamError
from app.providers.registry import adapter_for, load_catalog

CATALOG = load_catalog()
ADAPTERS = {spec.family: adapter_for(spec) for spec in CATALOG.values()}
SPECS = {family: next(s for s in CATALOG.values() if s.family == family) for family in ADAPTERS}
FAMILIES = sorted(ADAPTERS)


class TestValidationFrame:
    @pytest.mark.parametrize("family", FAMILIES)
    def test_adapters_write_input_rules_not_the_frame(self, family):
        adapter = type(ADAPTERS[family])
        assert adapter.validate is Adapter.validate
        assert adapter.check is not Adapter.check


class TestPollable:
    def test_only_the_synchronous_families_have_nothing_to_poll(self):
        assert sorted(f for f, adapter in ADAPTERS.items() if not adapter.pollable) == ["gpt_image", "seedream"]

    @pytest.mark.parametrize("model", sorted(CATALOG))
    def test_build_poll_refuses_only_what_is_not_pollable(self, model):
        spec = CATALOG[model]
        adapter = adapter_for(spec)
        if adapter.pollable:
            assert adapter.build_poll(spec, "task_1").method in ("GET", "POST")
        else:
            with pytest.raises(NotImplementedError):
                adapter.build_poll(spec, "task_1")


NOT_OBJECTS = [None, "<html>Bad gateway</html>", 42, 1.5, True, ["a", "list"]]
# Per family, answers whose shape cannot be read: a missing id, or a nested field of the wrong type.
GARBAGE = [
    ("sora", "create", {"object": "video", "status": "queued"}),
    ("sora", "poll", {"status": 5}),
    ("sora", "poll", {"status": "failed", "error": ["moderation"]}),
    ("veo", "create", {"id": 5}),
    ("veo", "poll", {"status": "failed", "error": 5}),
    ("kling", "create", {"code": 0, "data": {}}),
    ("kling", "poll", {"code": 0, "data": "x"}),
    ("kling", "poll", {"data": {"task_status": "succeed", "task_result": {"videos": 5}}}),
    ("runway", "create", {"data": 5}),
    ("runway", "poll", {"status": "SUCCEEDED", "output": "https://cdn.example.com/a.mp4"}),
    ("seedance", "create", {"id": None, "status": "queued"}),
    ("seedance", "poll", {"status": ["queued"]}),
    ("seedance", "poll", {"status": "succeeded", "created_at": 1e300}),
    ("minimax", "create", {"base_resp": {"status_code": 0}}),
    ("minimax", "poll", {"base_resp": {"status_code": "busy"}}),
    ("minimax", "poll", {"base_resp": {"status_code": 1002, "status_msg": "rate limited"}}),
    ("midjourney", "create", {"code": [1], "result": "1773314942177684"}),
    ("midjourney", "poll", {"status": "SUCCESS", "image_urls": "https://cdn.example.com/a.png"}),
    ("midjourney", "batch", {"data": {"id": "1773314942177684"}}),
    ("suno", "poll", {"data": {"task_id": "t1", "status": "SUCCESS", "data": 5}}),
    ("suno", "batch", {"code": "success", "data": "t1"}),
    ("flux", "create", {"id": ["x"]}),
    ("flux", "poll", {"status": {"state": "Ready"}}),
    ("replicate", "create", {"status": "starting"}),
    ("replicate", "create", {"id": "p1", "status": 3}),
    ("replicate", "poll", {"status": "succeeded", "started_at": float("nan")}),
    ("bria", "create", {"request_id": {"id": 1}}),
    ("bria", "poll", {"status": 5}),
    ("seedream", "create", {"data": [{"b64_json": 5}]}),
    ("seedream", "create", {"data": "x"}),
    ("seedream", "poll", {"error": "boom"}),
    ("gpt_image", "create", {"data": [{"b64_json": "not base64!"}]}),
    ("gpt_image", "poll", {"data": 7}),
]


def parse(family: str, call: str, body):
    spec, adapter = SPECS[family], ADAPTERS[family]
    if call == "create":
        return adapter.parse_create(spec, body)
    if call == "batch":
        return adapter.parse_batch_poll(spec, ["1773314942177684", "t1"], body)
    return adapter.parse_poll(spec, "t1", body)


class TestUnreadableAnswers:
    def test_it_is_not_a_bug_class_callers_could_confuse_with_ours(self):
        assert not issubclass(UnreadableAnswer, ValueError | KeyError | TypeError | AttributeError)

    @pytest.mark.parametrize("body", NOT_OBJECTS, ids=repr)
    @pytest.mark.parametrize("family", FAMILIES)
    def test_an_answer_that_is_not_an_object_is_unreadable(self, family, body):
        calls = ["create", "poll"] + (["batch"] if ADAPTERS[family].batch_poll_size else [])
        for call in calls:
            if call == "batch" and isinstance(body, list):
                continue  # a list is a batch answer's own shape
            with pytest.raises(UnreadableAnswer):
                parse(family, call, body)

    @pytest.mark.parametrize(("family", "call", "body"), GARBAGE, ids=lambda v: v if isinstance(v, str) else "")
    def test_a_missing_id_or_a_wrongly_typed_field_is_unreadable(self, family, call, body):
        with pytest.raises(UnreadableAnswer):
            parse(family, call, body)

    def test_every_family_has_garbage_of_its_own(self):
        assert {family for family, _, _ in GARBAGE} == set(FAMILIES)

    @pytest.mark.parametrize("family", FAMILIES)
    def test_random_answers_are_read_or_refused_never_crash(self, family):
        """Anything but UnreadableAnswer (or an upstream's rejection) is a bug of ours."""
        rng = random.Random(family)
        for _ in range(300):
            body = random_answer(rng)
            for call in ["create", "poll"] + (["batch"] if ADAPTERS[family].batch_poll_size else []):
                try:
                    parse(family, call, body)
                except (UnreadableAnswer, UpstreamError):
                    pass


KEYS = ["id", "task_id", "request_id", "status", "task_status", "progress", "data", "result", "code", "error",
        "message", "output", "image_urls", "task_result", "videos", "images", "url", "b64_json", "base_resp",
        "status_code", "created_at", "start_time", "finish_time", "createdAt", "logs", "content", "video_url"]
SCALARS = [None, True, 0, 1, 21, -5, 1.5, 1e300, float("nan"), 10**30, 1773297229000, "", "x", "58%",
           "2025-01-01T00:00:00Z", "https://cdn.example.com/a.mp4", "aGVsbG8=", "task_not_exist",
           "SUCCESS", "succeeded", "succeed", "Ready", "completed", "failed", "FAILURE", "Success", "COMPLETED"]


def random_answer(rng: random.Random, depth: int = 0):
    roll = rng.random()
    if depth > 3 or roll < 0.4:
        return rng.choice(SCALARS)
    if roll < 0.85:
        return {rng.choice(KEYS): random_answer(rng, depth + 1) for _ in range(rng.randint(0, 6))}
    return [random_answer(rng, depth + 1) for _ in range(rng.randint(0, 3))]
