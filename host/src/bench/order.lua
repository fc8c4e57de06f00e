-- Cairn's order benchmark under wrk (`cairn bench --load wrk` runs it; see docs/benchmarks.md).
-- Every request is a ProcessOrder on an order key of its own, prices in cents, over the
-- connection wrk keeps alive. Usable by hand too:
--   wrk -t2 -c128 -d10s --latency -s host/src/bench/order.lua http://127.0.0.1:8080 -- run1
-- The argument after `--` prefixes the order keys (a run of its own per prefix); at the end one
-- line `cairn-wrk {...}` gives the counts and latency percentiles (microseconds) as JSON.

local body = '{"items":[{"productId":"prod-123","quantity":2,"price":2500}],'
    .. '"customer":{"email":"bench@example.com","name":"Bench Customer"},'
    .. '"shipping":{"street":"123 Main St","city":"SF","state":"CA","zip":"94105","country":"US"}}'
local headers = { ["Content-Type"] = "application/json" }

local threads = 0
function setup(thread)
    thread:set("thread_id", threads)
    threads = threads + 1
end

local prefix = "wrk"
local sent = 0
function init(args)
    prefix = args[1] or prefix
end

function request()
    sent = sent + 1
    local path = string.format("/OrderOrchestrator/%s-%d-%d/ProcessOrder", prefix, thread_id, sent)
    return wrk.format("POST", path, headers, body)
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        'cairn-wrk {"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,'
            .. '"write_errors":%d,"timeouts":%d,"non_2xx":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d}\n',
        summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout, e.status,
        latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
