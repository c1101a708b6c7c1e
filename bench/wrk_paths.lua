-- wrk script: each request takes the next path from the file named after `--` (one per line),
-- starting at a random line, so a run visits many positions of a list.
local paths = {}
local i = 1

init = function(args)
  for line in io.lines(args[1]) do
    if line ~= "" then paths[#paths + 1] = line end
  end
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16))
  i = math.random(#paths)
end

request = function()
  i = i % #paths + 1
  return wrk.format(nil, paths[i])
end
