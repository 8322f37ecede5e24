-- wrk script for benches/soak.sh: keep-alive GETs of every kind of file in the soak's root
-- (small files served from memory, the 64 KiB boundary, a sendfile'd 1 MiB file, a directory
-- index), in turn on each connection.

local paths = { "/small.html", "/small.html", "/small.html", "/small.html", "/4k.bin", "/4k.bin",
  "/64k.bin", "/", "/1m.bin" }
local i = 0

function request()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
