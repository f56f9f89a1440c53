-- POST /auth/token with the bench user's right password: every login succeeds, so the
-- throttle counts nothing. The body comes from the environment (BENCH_LOGIN_BODY).
wrk.method = "POST"
wrk.body = os.getenv("BENCH_LOGIN_BODY")
wrk.headers["Content-Type"] = "application/json"
