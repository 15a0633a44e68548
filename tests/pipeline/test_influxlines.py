"""The one InfluxDB line writer: refusals, outages and configuration errors never confused."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.errors import FatalOutputError, RefusedOutputError, TransientOutputError
from pipeline.influxlines import LineWriter, isolate


class _Api:
    """A write API that fails with ``error`` (or records the body it was given)."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error
        self.bodies: list[bytes] = []

    def write(self, **kwargs: Any) -> None:
        if self.error is not None:
            raise self.error
        self.bodies.append(kwargs["record"])


class _Client:
    def __init__(self, api: _Api) -> None:
        self.api = api

    def write_api(self, **_kwargs: Any) -> _Api:
        return self.api


def _api_error(status: int, body: str = '{"message":"nope"}') -> Exception:
    from influxdb_client.rest import ApiException

    exc = ApiException(status=status, reason="reason")
    exc.body = body
    return exc


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (_api_error(400), RefusedOutputError),
        (_api_error(413), RefusedOutputError),
        (_api_error(422), RefusedOutputError),
        (_api_error(401), FatalOutputError),
        (_api_error(403), FatalOutputError),
        (_api_error(404), FatalOutputError),
        (_api_error(429), TransientOutputError),
        (_api_error(500), TransientOutputError),
        (_api_error(503), TransientOutputError),
        (ConnectionRefusedError(), TransientOutputError),
        (TimeoutError(), TransientOutputError),
    ],
)
def test_each_failure_is_classified(error: BaseException, kind: type[Exception]) -> None:
    writer = LineWriter(_Client(_Api(error)), "b", "o")
    with pytest.raises(kind) as caught:
        writer.write(["m,t=a v=1 1"])
    assert "\n" not in str(caught.value)
    if kind is RefusedOutputError:
        assert "nope" in caught.value.detail  # type: ignore[attr-defined]


def test_a_line_that_is_not_utf8_is_refused_not_raised() -> None:
    writer = LineWriter(_Client(_Api()), "b", "o")
    with pytest.raises(RefusedOutputError):
        writer.write(["m,t=\ud800 v=1 1"])


def test_lines_go_in_chunks_as_one_body_each() -> None:
    api = _Api()
    LineWriter(_Client(api), "b", "o").write([f"m v={i} {i}" for i in range(12_001)])
    assert [body.count(b"\n") + 1 for body in api.bodies] == [5000, 5000, 2001]


def test_isolate_finds_every_refused_item_and_writes_the_rest() -> None:
    written: list[int] = []
    attempts = 0

    def attempt(batch: Any) -> None:
        nonlocal attempts
        attempts += 1
        if any(i % 97 == 0 for i in batch):
            raise RefusedOutputError("refused", "HTTP 400")
        written.extend(batch)

    refused = isolate(list(range(1, 1001)), attempt)
    assert [item for item, _ in refused] == list(range(97, 1001, 97))
    assert sorted(written) == [i for i in range(1, 1001) if i % 97]
    assert attempts < 2 * 10 * 11  # about 2 k log2(n), not n


def test_isolate_lets_an_outage_through() -> None:
    def attempt(_batch: Any) -> None:
        raise TransientOutputError("down")

    with pytest.raises(TransientOutputError):
        isolate([1, 2, 3], attempt)
