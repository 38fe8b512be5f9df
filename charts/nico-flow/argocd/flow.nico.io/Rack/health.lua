-- Argo CD health of a flow.nico.io Rack: Healthy while the inventory is in sync
-- with NICo Core; a leak, a sync failure or drift is Degraded.
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

if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to mirror the rack into the inventory"
elseif not current(obj) then
  hs.status = "Progressing"
  hs.message = behind(obj)
elseif isTrue(conds["LeakDetected"]) then
  hs.status = "Degraded"
  hs.message = text(conds["LeakDetected"], "coolant leak detected")
elseif isFalse(conds["InventorySynced"]) then
  hs.status = "Degraded"
  hs.message = text(conds["InventorySynced"], "inventory not in sync")
elseif isTrue(conds["Drifted"]) then
  hs.status = "Degraded"
  hs.message = text(conds["Drifted"], "the rack differs from NICo Core")
elseif isTrue(conds["InventorySynced"]) then
  hs.status = "Healthy"
  hs.message = text(conds["InventorySynced"], "in sync")
else
  hs.status = "Progressing"
  hs.message = "waiting for the inventory sync"
end
return hs
