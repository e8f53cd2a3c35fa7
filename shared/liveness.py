"""Job liveness from the heartbeat of the stage that runs it, not the broker's visibility timeout.

A running stage stamps its job every JOB_HEARTBEAT_S (`BEAT_LUA`): the job's `heartbeat`
and `running_stage` fields, and its score (the time of the beat) in ACTIVE_JOBS (which the
reaper fails after STUCK_JOB_TIMEOUT_S, the last resort) and in RUNNING_STAGES. A stage that
ends normally leaves RUNNING_STAGES (`ENDED_LUA`): its job then waits in the queue for the
next stage, which says nothing about a lost worker.

A job that stays in RUNNING_STAGES without a beat for JOB_LIVENESS_TIMEOUT_S lost the run
of its stage: the worker was killed, or the broker connection dropped and Celery terminated
the task, whose message then waits out the visibility timeout (an hour) in `unacked`.
`CLAIM_LUA` takes such a job over exactly once: it leaves RUNNING_STAGES and its `dispatch`
goes up, so the stage is sent again under the new dispatch (the stage data of the stages
before it is still in Redis) and the old message, when the broker hands it back, is refused
as stale by the dispatch fence (`workers/middleware/dispatch.py`).

Every script leaves a job that is gone or terminal alone: a beat must not bring back a
record that a Redis restart without persistence lost.
"""

from __future__ import annotations

from shared.schemas import TERMINAL_STATUSES

# The terminal statuses, as the scripts receive them (space-separated).
TERMINAL_ARG = " ".join(status.value for status in TERMINAL_STATUSES)

# Fields of the job hash the scripts use.
RUNNING_STAGE = "running_stage"
RUN_TOKEN = "run_token"
ENDED_TOKEN = "ended_token"
DISPATCH = "dispatch"

# KEYS: job hash, ACTIVE_JOBS, RUNNING_STAGES.
# ARGV: now, job id, stage, run token, terminal statuses, the run's attempt.
# Returns 1 when stamped, 0 when the job is gone or terminal, this run already ended (a beat
# that raced the end of its stage must not make the job look like it runs again) or was
# fenced out by a newer attempt (its beats would hide whether the newer run is alive).
BEAT_LUA = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 0 end
for terminal in string.gmatch(ARGV[5], '%S+') do
  if status == terminal then return 0 end
end
if redis.call('HGET', KEYS[1], 'ended_token') == ARGV[4] then return 0 end
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[6] then return 0 end
redis.call('HSET', KEYS[1], 'heartbeat', ARGV[1], 'running_stage', ARGV[3],
           'run_token', ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[1], ARGV[2])
return 1
"""

# KEYS: job hash, RUNNING_STAGES. ARGV: job id, run token.
# The run's stage ended normally: later beats of this run are refused, and unless a newer
# run took over the job, it leaves RUNNING_STAGES.
ENDED_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'ended_token', ARGV[2])
if redis.call('HGET', KEYS[1], 'run_token') == ARGV[2] then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 1
end
return 0
"""

# KEYS: job hash, RUNNING_STAGES. ARGV: job id, cutoff (a time), terminal statuses.
# Returns {stage, dispatch, backfill id} when the job is taken over, nil when it beat since
# the cutoff, left RUNNING_STAGES meanwhile, is gone or terminal.
CLAIM_LUA = """
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return nil end
redis.call('ZREM', KEYS[2], ARGV[1])
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return nil end
for terminal in string.gmatch(ARGV[3], '%S+') do
  if status == terminal then return nil end
end
local stage = redis.call('HGET', KEYS[1], 'running_stage')
if not stage then return nil end
local dispatch = redis.call('HINCRBY', KEYS[1], 'dispatch', 1)
return {stage, dispatch, redis.call('HGET', KEYS[1], 'backfill_id') or ''}
"""
