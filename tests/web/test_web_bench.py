"""``encore bench web`` end to end on a real server, at a size that takes seconds."""

from __future__ import annotations

import pytest

from encore import cli


def test_bench_web_counts_what_it_sends_and_the_server_stores(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["bench", "web", "--clients", "2", "--heartbeats", "3"])
    out = capsys.readouterr().out
    assert code == 0, out
    # 2 clients × 3 heartbeats in each of the two phases, and one rating each.
    assert "listens: 12 accepted, 12 stored; ratings: 2 accepted, 2 stored" in out
    assert "stored == sent: yes" in out
    assert "saturation: 6 writes" in out and "paced at 300/s: 8 writes" in out


def test_bench_web_refuses_a_bad_size() -> None:
    from encore.errors import InvalidInput
    from encore.web.bench import run_bench

    class Args:
        quick, clients, heartbeats, web_workers = False, 2, -1, 1

    with pytest.raises(InvalidInput, match="--heartbeats -1"):
        run_bench(Args())


def test_steal_share_is_the_hypervisors_part_of_the_cpu_time() -> None:
    from encore.web.bench import _steal_share

    before = [100, 0, 50, 800, 0, 0, 0, 50, 0, 0]
    after = [160, 0, 70, 880, 0, 0, 0, 90, 0, 0]  # +60 user, +20 system, +80 idle, +40 steal
    assert _steal_share(before, after) == 40 / 200
    assert _steal_share(None, after) is None


def test_the_raw_client_reopens_a_connection_the_server_closed_while_idle(monkeypatch) -> None:
    """uvicorn closes an idle keep-alive connection (here after 1 s); a request sent into it
    would get no answer, so the client reopens a connection idle past its margin."""
    import asyncio
    import socket

    import uvicorn

    from encore.web import bench

    async def app(scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def run() -> list[tuple[int, bytes]]:
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, timeout_keep_alive=1,
                                               log_level="warning", lifespan="off"))
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.02)
        client = bench.RawClient(f"http://127.0.0.1:{port}", {})
        try:
            answers = [await client.post("/x", {"a": 1})]
            await asyncio.sleep(1.5)  # the server closes the idle connection meanwhile
            answers.append(await client.post("/x", {"a": 2}))
        finally:
            await client.close()
            server.should_exit = True
            await task
        return answers

    monkeypatch.setattr(bench, "REOPEN_AFTER_IDLE_SECONDS", 0.5)
    assert asyncio.run(run()) == [(200, b"ok"), (200, b"ok")]
