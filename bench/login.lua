-- POST /auth/token with the right password, taking turns over the bench users: every login
-- succeeds, and no (user, address) pair has enough attempts in flight for the throttle to
-- refuse one. The bodies come from BENCH_LOGIN_BODIES, one JSON body a line.
local threads = 0

function setup(thread)
   thread:set("offset", threads)
   threads = threads + 1
end

function init(args)
   bodies = {}
   for body in string.gmatch(os.getenv("BENCH_LOGIN_BODIES") or "", "[^\n]+") do
      table.insert(bodies, body)
   end
   assert(#bodies > 0, "BENCH_LOGIN_BODIES is empty")
   -- Threads start half a turn apart, so they do not log the same users in at once.
   turn = offset * math.floor(#bodies / 2)
   headers = { ["Content-Type"] = "application/json" }
end

function request()
   turn = turn + 1
   return wrk.format("POST", nil, headers, bodies[turn % #bodies + 1])
end
