-- wrk script: sends DEPTH pipelined GET requests in one write (default 16).
-- Usage: wrk -s benches/pipeline.lua http://127.0.0.1:8080/small.html -- 16
-- wrk counts every response, so requests/s counts individual requests, not batches.

local batch

function init(args)
  local depth = tonumber(args[1]) or 16
  local requests = {}
  for i = 1, depth do
    -- wrk.format(nil, nil) uses wrk.method, wrk.path (from the URL) and wrk.headers.
    requests[i] = wrk.format(nil, nil)
  end
  batch = table.concat(requests)
end

function request()
  return batch
end
