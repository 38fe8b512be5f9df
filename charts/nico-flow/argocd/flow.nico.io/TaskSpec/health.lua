-- Argo CD health of a flow.nico.io TaskSpec (one request over many racks):
-- Complete, Failed and Cancelled are final; Suspended holds unstarted Tasks.
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

if isTrue(conds["Complete"]) then
  hs.status = "Healthy"
  hs.message = text(conds["Complete"], "all racks succeeded")
elseif isTrue(conds["Failed"]) then
  hs.status = "Degraded"
  hs.message = text(conds["Failed"], "failed")
elseif isTrue(conds["Cancelled"]) then
  hs.status = "Suspended"
  hs.message = text(conds["Cancelled"], "cancelled")
elseif obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to resolve the targets"
elseif not current(obj) then
  hs.status = "Progressing"
  hs.message = behind(obj)
elseif isTrue(conds["Suspended"]) then
  hs.status = "Suspended"
  hs.message = text(conds["Suspended"], "suspended")
else
  hs.status = "Progressing"
  if obj.status.message ~= nil and obj.status.message ~= "" then
    hs.message = obj.status.message
  else
    hs.message = "running"
  end
end
return hs
