-- Argo CD health of a flow.nico.io Task (one rack's run): Succeeded and Failed
-- are final; a cancelled Task is Suspended; anything else is still Progressing.
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
local phase = nil
if obj.status ~= nil then
  phase = obj.status.phase
end

if isTrue(conds["Succeeded"]) then
  hs.status = "Healthy"
  hs.message = text(conds["Succeeded"], "all stages succeeded")
elseif isTrue(conds["Failed"]) then
  if phase == "Cancelled" or conds["Failed"].reason == "Cancelled" then
    hs.status = "Suspended"
    hs.message = text(conds["Failed"], "cancelled")
  else
    hs.status = "Degraded"
    hs.message = text(conds["Failed"], "failed")
  end
elseif phase == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the operator"
elseif obj.status.observedGeneration ~= nil and not current(obj) then
  -- a cancel request the operator has not seen yet (a Task not started has no
  -- observedGeneration: its status comes from admission, not from a run)
  hs.status = "Progressing"
  hs.message = behind(obj)
elseif isTrue(conds["Queued"]) and phase == "Waiting" then
  hs.status = "Progressing"
  hs.message = text(conds["Queued"], "queued behind a conflicting Task")
else
  hs.status = "Progressing"
  if obj.status.message ~= nil and obj.status.message ~= "" then
    hs.message = obj.status.message
  else
    hs.message = phase
  end
end
return hs
