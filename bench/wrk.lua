-- The script of every wrk run of the benchmark.
--
-- With BENCH_LOGIN_BODIES set (one JSON body a line), each request is a POST /auth/token
-- with the right password, taking turns over the bench users: every login succeeds, and no
-- (user, address) pair has enough attempts in flight for the throttle to refuse one.
--
-- At the end it prints the latency at every 0.1 percentile, so that the benchmark can merge
-- the latency distributions of several runs of one row exactly enough for p50 and p99.

local bodies_text = os.getenv("BENCH_LOGIN_BODIES")

if bodies_text then
   local threads = 0

   function setup(thread)
      thread:set("offset", threads)
      threads = threads + 1
   end

   function init(args)
      bodies = {}
      for body in string.gmatch(bodies_text, "[^\n]+") do
         table.insert(bodies, body)
      end
      -- Threads start half a turn apart, so they do not log the same users in at once.
      turn = offset * math.floor(#bodies / 2)
      headers = { ["Content-Type"] = "application/json" }
   end

   function request()
      turn = turn + 1
      return wrk.format("POST", nil, headers, bodies[turn % #bodies + 1])
   end
end

function done(summary, latency, requests)
   local grid = {}
   for step = 1, 1000 do
      grid[step] = string.format("%d", latency:percentile(step / 10))
   end
   io.write("latency quantiles us: " .. table.concat(grid, " ") .. "\n")
end
