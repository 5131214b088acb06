"""How CometAPI's error answers are classified (its error guide: retry 429 and
5xx/524 with backoff, never 400/401/403, redirects or a 500 `invalid_request`)."""

from __future__ import annotations

import pytest

from app.providers.http import classify


class TestClassify:
    def test_the_request_id_inside_the_message_is_kept_for_support(self):
        error = classify(429, {"retry-after": "2"}, '{"error": {"message": "busy (request id: 2026113012ab)", '
                         '"type": "comet_api_error", "code": ""}}')
        assert (error.retryable, error.retry_after, error.request_id) == (True, 2.0, "2026113012ab")
        assert error.error_code == "upstream_http_429"

    @pytest.mark.parametrize("status", [400, 401, 403, 404])
    def test_client_errors_are_final(self, status):
        assert classify(status, {}, '{"error": {"message": "no", "code": "invalid_request"}}').retryable is False

    @pytest.mark.parametrize("status", [429, 500, 502, 503, 504, 524])
    def test_platform_errors_are_retried(self, status):
        assert classify(status, {}, "").retryable is True

    def test_a_500_whose_code_is_invalid_request_is_final(self):
        error = classify(500, {}, '{"error": {"message": "model name is required", "code": "invalid_request"}}')
        assert (error.retryable, error.code) == (False, "invalid_request")

    def test_a_redirect_names_the_wrong_path_and_is_final(self):
        error = classify(301, {"location": "https://www.cometapi.com/"}, "<html>moved</html>")
        assert error.retryable is False
        assert "wrong base URL or path" in error.message

    def test_an_html_body_becomes_a_short_message(self):
        assert classify(502, {}, "<html>bad gateway</html>" + "x" * 1000).message.startswith("<html>bad gateway")
