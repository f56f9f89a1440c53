-- The script of every wrk run of the benchmark.
--
-- With BENCH_LOGIN_BODIES set (one JSON body a line), each request is a POST /auth/token
-- with the right password, taking turns over the bench users: every login succeeds, and no
-- (user, address) pair has enough attempts in flight for the throttle to refuse one.
--
-- With BENCH_POOL set (a file, one item a line), each request is a POST that spends one
-- item, never twice: a refresh token, an mfa_token, an authorization code. BENCH_POOL_AS
-- says where the line goes: "body" (the line is the JSON body) or "cookie" (the line is the
-- Cookie header). Thread n of N takes lines n, n + N, n + 2N, ...; at the end the script
-- prints how far into the file the threads got, and how many requests found it spent
-- (those reuse the last line, and fail: the row says so rather than counting them).
--
-- At the end it prints the latency at every 0.1 percentile, so that the benchmark can merge
-- the latency distributions of several runs of one row exactly enough for p50 and p99.

local bodies_text = os.getenv("BENCH_LOGIN_BODIES")
local pool_path = os.getenv("BENCH_POOL")
local threads = {}

if bodies_text then
   function setup(thread)
      thread:set("offset", #threads)
      table.insert(threads, thread)
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
elseif pool_path then
   local place = os.getenv("BENCH_POOL_AS") or "body"

   function setup(thread)
      thread:set("offset", #threads)
      table.insert(threads, thread)
   end

   function init(args)
      items = {}
      for line in io.lines(pool_path) do
         table.insert(items, line)
      end
      stride = tonumber(os.getenv("BENCH_POOL_STRIDE"))
      index = offset + 1 - stride
      highest = 0
      dry = 0
      headers = {}
      for name, value in pairs(wrk.headers) do
         headers[name] = value
      end
   end

   function request()
      index = index + stride
      if index > #items then
         dry = dry + 1
         index = #items
      end
      if index > highest then
         highest = index
      end
      local item = items[index] or ""
      if place == "cookie" then
         headers["Cookie"] = item
         return wrk.format("POST", nil, headers, "")
      end
      return wrk.format("POST", nil, headers, item)
   end
end

function done(summary, latency, requests)
   if pool_path then
      local highest, dry = 0, 0
      for _, thread in ipairs(threads) do
         highest = math.max(highest, thread:get("highest") or 0)
         dry = dry + (thread:get("dry") or 0)
      end
      io.write(string.format("pool used: %d dry: %d\n", highest, dry))
   end
   local grid = {}
   for step = 1, 1000 do
      grid[step] = string.format("%d", latency:percentile(step / 10))
   end
   io.write("latency quantiles us: " .. table.concat(grid, " ") .. "\n")
end
