-- wrk: every request heartbeats the same live stream of one account.
wrk.method = "POST"
wrk.path = "/streams/bench-stream/heartbeat"
wrk.headers["X-ID"] = "bench-user"
