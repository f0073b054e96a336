-- Wire compatibility with a NATS peer that is not aengine: a raw-protocol
-- Python client (tests/peer/nats_peer.py) requests an aengine serve and
-- answers an aengine request.
local nats = require "ae.nats"
local task = require "ae.task"

local function read_file(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

describe("ae.nats with a foreign peer", function()
  it("serves the peer's request and gets the peer's reply (both directions)", function()
    local id = nats.new_request_id()
    local serve_subject, req_subject = "peer.serve." .. id, "peer.req." .. id
    local ready, out = os.tmpname(), os.tmpname()
    os.remove(ready)
    local host, port = os.getenv("NATS_SERVER1"):match("nats://([^:]+):(%d+)")
    local sub = assert(nats.serve(serve_subject, function(req)
      return { status = 200, body = { ticket_id = req.body.ticket_id, seen_topic = req.response_topic } }
    end, { queue = "peer_test" }))
    assert(nats.flush(2))
    os.execute(string.format("python3 tests/peer/nats_peer.py %s %s %s %s %s > %s 2>&1 &", host, port,
      serve_subject, req_subject, ready, out))
    for _ = 1, 500 do
      if read_file(ready) then break end
      task.sleep(0.02)
    end
    assert.truthy(read_file(ready), "the peer did not start: " .. tostring(read_file(out)))
    local reply = assert(nats.request(req_subject, { request_id = "AeReq", body = { x = 1 } }, { timeout = 5 }))
    assert.equal(200, reply.status)
    assert.equal("AeReq", reply.request_id)
    assert.equal("raw", reply.body.peer)
    assert.equal(1, reply.body.got.x)
    local result
    for _ = 1, 500 do
      result = read_file(out)
      if result and result:find("\n") then break end
      task.sleep(0.02)
    end
    assert.equal("OK\n", result)
    sub:unsubscribe()
    os.remove(ready)
    os.remove(out)
  end)
end)
