-- wrk script: POST 1 KB im.incident.note events with unique ids, spread over BENCH_INCIDENTS
-- incidents (100 unless set; 1 puts every note on one hot incident).
local counter = 0
local threads = 0
local padding = string.rep("x", 800)
local incidents = tonumber(os.getenv("BENCH_INCIDENTS") or "100")

function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"specversion":"1.0","id":"%s-%d-%d","source":"/bench","type":"im.incident.note",' ..
    '"imincidentid":"BENCH-%d","time":"2026-01-01T00:00:00Z","data":{"text":"%s"}}',
    os.getenv("BENCH_RUN") or "run", tid, counter, counter % incidents, padding)
  return wrk.format("POST", "/v1/events", {
    ["Content-Type"] = "application/cloudevents+json",
    ["Authorization"] = "Bearer " .. (os.getenv("BENCH_TOKEN") or ""),
  }, body)
end
