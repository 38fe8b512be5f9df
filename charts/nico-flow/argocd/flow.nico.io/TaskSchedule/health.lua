-- Argo CD health of a flow.nico.io TaskSchedule: Healthy when armed (or a
-- one-time schedule has fired), Suspended by spec.suspend, Degraded for an
-- invalid schedule or a missed firing.
-- Conditions by type, collected before any decision (one pass, no early return
-- on the first match).
local function conditions(o)
  local byType = {}
  if o.status ~= nil and o.status.conditions ~= nil then
    for _, c in ipairs(o.status.conditions) do
      byType[c.type] = c
    end
  end
  return byType
end

local function isTrue(c)
  return c ~= nil and c.status == "True"
end

local function isFalse(c)
  return c ~= nil and c.status == "False"
end

-- Whether status was written for the current spec.
local function current(o)
  local generation = o.metadata.generation
  if generation == nil then
    return true
  end
  local observed = nil
  if o.status ~= nil then
    observed = o.status.observedGeneration
  end
  return observed ~= nil and observed >= generation
end

local function text(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return fallback
end

local function behind(o)
  return "waiting for the operator to observe generation " .. tostring(o.metadata.generation)
end

local hs = {}
local conds = conditions(obj)
local ready = conds["Ready"]

if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to arm the schedule"
elseif not current(obj) then
  hs.status = "Progressing"
  hs.message = behind(obj)
elseif isTrue(conds["Suspended"]) then
  hs.status = "Suspended"
  hs.message = text(conds["Suspended"], "suspended")
elseif isFalse(ready) and ready.reason == "InvalidSchedule" then
  hs.status = "Degraded"
  hs.message = text(ready, "invalid schedule")
elseif isTrue(conds["Missed"]) then
  hs.status = "Degraded"
  hs.message = text(conds["Missed"], "a firing was missed")
elseif isTrue(conds["Completed"]) then
  hs.status = "Healthy"
  hs.message = text(conds["Completed"], "the one-time schedule fired")
elseif isTrue(ready) then
  hs.status = "Healthy"
  hs.message = text(ready, "scheduled")
  if isTrue(conds["Skipped"]) then
    hs.message = hs.message .. "; last firing skipped: " .. text(conds["Skipped"], "overlap")
  end
elseif isFalse(ready) and ready.reason == "NoFutureTimes" then
  hs.status = "Healthy"
  hs.message = text(ready, "no time left to fire")
else
  hs.status = "Progressing"
  hs.message = text(ready, "waiting for the schedule to be armed")
end
return hs
