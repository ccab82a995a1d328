PRAGMA application_id = 1346458179;
PRAGMA user_version = 2;
CREATE TABLE sweeps (
  name TEXT PRIMARY KEY,           -- the sweep file's "name" ([A-Za-z0-9._-]+)
  file TEXT NOT NULL,              -- path of the sweep file last planned, as given on the command line
  description TEXT NOT NULL,       -- the file's "description", '' when absent
  spec TEXT NOT NULL,              -- the sweep file's JSON document as last planned
  jobs_dir TEXT NOT NULL,          -- absolute folder holding <job id>/ run folders of new jobs
  created_at REAL NOT NULL,        -- unix s, first plan
  updated_at REAL NOT NULL         -- unix s, last plan
) STRICT;
CREATE TABLE jobs (
  id TEXT PRIMARY KEY,             -- JobConfig::id(): 16 hex digits, hash of the canonical job JSON
  sweep TEXT NOT NULL REFERENCES sweeps(name) ON DELETE CASCADE,  -- owning sweep
  cell TEXT NOT NULL,              -- cell name, e.g. 'C1e18-mu4-seed0', unique within the sweep
  state TEXT NOT NULL DEFAULT 'planned'  -- lifecycle, see docs/schema.md
    CHECK (state IN ('planned', 'running', 'done', 'diverged', 'failed', 'preempted', 'cancelled')),
  model TEXT NOT NULL,             -- model label (preset or config name)
  budget_id TEXT,                  -- isoFLOP group label, e.g. '1e18'; NULL for fixed-data cells
  budget_flops REAL,               -- target budget C, FLOPs; NULL for fixed-data cells
  mean_recurrence INTEGER NOT NULL,  -- mu_rec, mean recurrence depth (1 for transformers)
  mean_backward INTEGER NOT NULL,  -- mu_bwd, graded (backpropagated) loop iterations
  fixed_depth INTEGER NOT NULL,    -- 1 when every step runs exactly mu_rec loops (control, transformer)
  seed INTEGER NOT NULL,           -- training seed
  parameters_total INTEGER NOT NULL,      -- all parameters, tied embedding counted once
  parameters_noncore INTEGER NOT NULL,    -- N_noncore of parcae.md §11
  parameters_core INTEGER NOT NULL,       -- N_core, the recurrent core's parameters
  parameters_embedding INTEGER NOT NULL,  -- numel(W_E)
  flops_per_token INTEGER NOT NULL,  -- F(mu_rec, mu_bwd), training FLOPs per token
  train_tokens INTEGER NOT NULL,   -- D = floor(C / F), tokens planned
  steps INTEGER NOT NULL,          -- optimizer steps planned, floor(D / batch_tokens)
  achieved_flops REAL NOT NULL,    -- FLOPs the planned steps spend: steps * batch_tokens * F
  gpu_hours_estimate REAL NOT NULL,  -- planner's estimate, GPU-hours, from the sweep's throughput
  gpus INTEGER NOT NULL,           -- GPUs per attempt
  config TEXT NOT NULL,            -- the job's JSON as written to job.json (without "id")
  out_dir TEXT NOT NULL,           -- absolute run folder: job.json, events.jsonl, checkpoint/, trainer.log
  failures INTEGER NOT NULL DEFAULT 0,     -- failed attempts since planning or the last retry
  preemptions INTEGER NOT NULL DEFAULT 0,  -- preempted attempts since planning or the last retry
  events_offset INTEGER NOT NULL DEFAULT 0,  -- bytes of events.jsonl ingested
  events_lines INTEGER NOT NULL DEFAULT 0,   -- complete lines of events.jsonl ingested
  steps_done INTEGER,              -- step of the last step event ingested
  tokens_done INTEGER,             -- tokens trained at that step
  flops_done REAL,                 -- FLOPs spent at that step
  last_loss REAL,                  -- training loss at that step, nats/token
  checkpoint_step INTEGER,         -- step of the last checkpoint event
  checkpoint_path TEXT,            -- path of the last checkpoint, as the trainer reported it
  final_status TEXT CHECK (final_status IN ('done', 'diverged')),  -- the done event's status
  loss_train REAL,                 -- final training loss from the done event, nats/token
  loss_val REAL,                   -- final validation loss from the done event (at T = mu_rec), nats/token
  wall_time_s REAL,                -- trainer wall time from the done event, s
  last_error TEXT,                 -- the last error event's message or the last failure reason
  created_at REAL NOT NULL,        -- unix s, when planned
  updated_at REAL NOT NULL,        -- unix s, last change of any column
  round INTEGER NOT NULL DEFAULT 0,  -- refinement round that added the cell; 0 = the sweep file's grid
  UNIQUE (sweep, cell)
) STRICT;
CREATE INDEX jobs_by_sweep_state ON jobs (sweep, state);
CREATE TABLE attempts (
  job TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,  -- the job
  attempt INTEGER NOT NULL,        -- 1, 2, ... in launch order
  started_at REAL NOT NULL,        -- unix s, claim time
  ended_at REAL,                   -- unix s; NULL while the attempt runs
  outcome TEXT NOT NULL            -- how it ended, see docs/schema.md
    CHECK (outcome IN ('running', 'done', 'diverged', 'failed', 'preempted', 'cancelled', 'lost')),
  exit_code INTEGER,               -- process exit status, 128 + n when killed by signal n; NULL if unknown
  reason TEXT,                     -- one line: why it ended this way
  backend TEXT NOT NULL,           -- 'local' (later 'slurm')
  backend_id TEXT,                 -- local: '<pid>/<start ticks>'; slurm: the job id
  host TEXT NOT NULL,              -- host name of the machine that ran it
  gpu_model TEXT,                  -- GPU model name, or 'cpu'
  devices TEXT,                    -- CUDA_VISIBLE_DEVICES given to it, '' on the CPU
  pid INTEGER,                     -- trainer process id (local backend)
  owner TEXT NOT NULL,             -- orchestrator that launched it: '<host>/<pid>/<start ticks>'
  PRIMARY KEY (job, attempt)
) STRICT;
CREATE TABLE provenance (
  job TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,  -- the job
  events_offset INTEGER NOT NULL,  -- byte offset of the start event in events.jsonl
  time REAL NOT NULL,              -- unix s of the start event
  resumed INTEGER NOT NULL,        -- 1 when the trainer resumed from a checkpoint
  parcae_version TEXT,             -- versions.parcae of the trainer binary
  git_commit TEXT,                 -- versions.git_commit when the trainer reports it
  libtorch_version TEXT,           -- versions.libtorch
  cuda_version TEXT,               -- versions.cuda ('' or 'none' on CPU builds)
  versions TEXT NOT NULL,          -- the start event's versions object, JSON
  device TEXT,                     -- device the trainer ran on, e.g. 'cuda:0', 'cpu'
  world_size INTEGER,              -- data-parallel ranks
  seed INTEGER,                    -- training seed the trainer reported
  parameters_total INTEGER,        -- all parameters of the module the trainer built
  parameters_noncore INTEGER,      -- its N_noncore
  parameters_core INTEGER,         -- its N_core
  parameters_embedding INTEGER,    -- its numel(W_E)
  flops_per_token INTEGER,         -- F the trainer counts with
  max_steps INTEGER,               -- optimizer steps the trainer will run
  train_tokens INTEGER,            -- D the trainer was given
  budget_flops REAL,               -- C the trainer was given, FLOPs
  config TEXT NOT NULL,            -- the job's JSON at ingest time
  PRIMARY KEY (job, events_offset)
) STRICT;
CREATE TABLE curve (
  job TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,  -- the job
  step INTEGER NOT NULL,           -- optimizer step, 1-based
  time REAL NOT NULL,              -- unix s
  tokens INTEGER NOT NULL,         -- tokens trained after this step
  flops REAL NOT NULL,             -- FLOPs spent after this step
  loss REAL,                       -- training loss of the step, nats/token; NULL when not finite
  lr_adamw REAL,                   -- AdamW learning rate at the step
  lr_muon REAL,                    -- Muon learning rate at the step
  grad_norm REAL,                  -- global gradient norm before clipping
  tokens_per_s REAL,               -- throughput, tokens/s
  skipped INTEGER,                 -- 1 when the step was skipped (non-finite gradient)
  mean_depth REAL,                 -- mean sampled recurrence depth T of the step
  log_rho REAL,                    -- log spectral radius of the injection's A-bar (looped models)
  mean_decay REAL,                 -- mean diagonal decay of A-bar
  h_rms REAL,                      -- RMS of the recurrent state after the last loop
  PRIMARY KEY (job, step)
) STRICT, WITHOUT ROWID;
CREATE TABLE evaluations (
  job TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,  -- the job
  step INTEGER NOT NULL,           -- optimizer step of the evaluation
  depth INTEGER NOT NULL,          -- T, loop iterations at evaluation (1 for transformers)
  time REAL NOT NULL,              -- unix s
  tokens INTEGER NOT NULL,         -- tokens trained at the evaluation
  loss REAL,                       -- validation loss, nats/token; NULL when not finite
  PRIMARY KEY (job, step, depth)
) STRICT, WITHOUT ROWID;
CREATE TABLE fits (
  id INTEGER PRIMARY KEY,          -- rowid
  law TEXT NOT NULL,               -- 'isoflop', 'power', 'satexp', 'chinchilla', 'parcae', ...
  sweep TEXT REFERENCES sweeps(name) ON DELETE CASCADE,  -- sweep fitted; NULL for CSV input
  coefficients TEXT NOT NULL,      -- JSON object: name -> value
  intervals TEXT NOT NULL,         -- JSON object: name -> [low, high], with the level in details
  job_ids TEXT NOT NULL,           -- JSON array of the job ids whose rows were used
  details TEXT NOT NULL,           -- JSON: the fit's full report (options, objective, minima, ...)
  created_at REAL NOT NULL         -- unix s
) STRICT;
CREATE TABLE refine_rounds (
  sweep TEXT NOT NULL REFERENCES sweeps(name) ON DELETE CASCADE,  -- the refined sweep
  round INTEGER NOT NULL,          -- 1, 2, ...: the round whose cells it adds (0 is the grid)
  action TEXT NOT NULL CHECK (action IN ('refine', 'stop')),  -- cells added, or refinement ended
  reason TEXT NOT NULL,            -- one line: why
  exponent REAL,                   -- a of x* = k C^a, the fit the decision rests on; NULL when none
  exponent_ci_low REAL,            -- lower end of a's 95% bootstrap interval; NULL when none
  exponent_ci_high REAL,           -- upper end of it; NULL when none
  cells INTEGER NOT NULL,          -- cells the round added
  flops REAL NOT NULL,             -- their planned FLOPs (achieved_flops summed)
  decision TEXT NOT NULL,          -- JSON: the whole decision, each budget's additions with reasons
  created_at REAL NOT NULL,        -- unix s
  PRIMARY KEY (sweep, round)
) STRICT;
