-- Argo CD health of a flow.nico.io OperationRule: Healthy when valid and in use;
-- Degraded when invalid or shadowed by another default rule.
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
  hs.message = "waiting for the operator to validate the rule"
elseif not current(obj) then
  hs.status = "Progressing"
  hs.message = behind(obj)
elseif isFalse(conds["Valid"]) then
  hs.status = "Degraded"
  hs.message = text(conds["Valid"], "invalid definition")
elseif isFalse(conds["Accepted"]) then
  hs.status = "Degraded"
  hs.message = text(conds["Accepted"], "not in use")
elseif isTrue(conds["Valid"]) and isTrue(conds["Accepted"]) then
  hs.status = "Healthy"
  hs.message = text(conds["Accepted"], "in use")
else
  hs.status = "Progressing"
  hs.message = "waiting for the operator to validate the rule"
end
return hs
