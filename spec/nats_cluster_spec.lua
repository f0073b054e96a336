-- ae.nats against a 3-node NATS cluster: the server the requester is
-- connected to is killed in the middle of a stream of requests; after the
-- reconnect every request is answered, each exactly once, with its own reply.
local nats = require "ae.nats"
local task = require "ae.task"
local cluster = require "spec.helpers.nats_cluster"

describe("ae.nats in a 3-node cluster", function()
  local cl
  before_each(function() cl = cluster.start(3) end)
  after_each(function() cl:stop() end)

  it("loses no request and answers none twice when its server dies mid-stream", function()
    local subject = "cluster.req." .. nats.new_request_id()
    local requester = nats.connect { servers = { cl.nodes[1].url }, name = "requester", reconnect_wait = 0.1 }
    local replier = nats.connect { servers = { cl.nodes[2].url }, name = "replier", reconnect_wait = 0.1 }
    assert(requester:wait())
    assert(replier:wait())
    assert.equal(cl.nodes[1].url, requester:status().server)
    local handled = {}
    local sub = assert(replier:serve(subject, function(req)
      handled[req.request_id] = (handled[req.request_id] or 0) + 1
      return { status = 200, body = req.request_id }
    end, { queue = "cluster_q" }))
    assert(replier:flush(2))
    task.sleep(0.3) -- interest propagates over the routes
    local n, done = 300, 0
    local fns = {}
    for i = 1, n do
      fns[i] = function()
        local id = "C" .. i
        local reply, err = requester:request(subject, { request_id = id, body = {} },
          { timeout = 1, retry = { multiplier = 0.1, min = 0.1, stop_delay = 20 } })
        done = done + 1
        assert(reply, err)
        return reply
      end
    end
    local killer = task.spawn(function()
      while done < n / 3 do task.sleep(0.005) end
      cl:kill(1)
    end)
    local results, errors, nerr = task.gather(fns, { limit = 20 })
    killer:wait()
    assert.equal(0, nerr, tostring(errors[next(errors) or 1]))
    for i = 1, n do
      assert.equal("C" .. i, results[i].body)
      assert.equal("C" .. i, results[i].request_id)
    end
    local st = requester:status()
    assert.is_true(st.reconnects >= 1)
    assert.are_not.equal(cl.nodes[1].url, st.server)
    -- at-least-once on the wire: a request lost with the dead server is re-sent;
    -- one whose reply was lost may run twice (platform §2.4) but never more.
    local dup = 0
    for i = 1, n do
      local c = handled["C" .. i] or 0
      assert.is_true(c >= 1 and c <= 2, "C" .. i .. " handled " .. c .. " times")
      if c > 1 then dup = dup + 1 end
    end
    assert.is_true(dup <= 20, dup .. " duplicates")
    sub:unsubscribe()
    requester:close()
    replier:close()
  end)
end)
