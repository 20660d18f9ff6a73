//! `streamguard.lua`, called one of two ways:
//!
//! - **Functions** (Redis >= 7): the file is loaded once per server as the
//!   library `streamguard_<v>` (`FUNCTION LOAD REPLACE`) and each decision
//!   is one `FCALL sg_<v>_<op>`. Redis keeps functions across restarts (in
//!   the RDB/AOF) and replicates them; if a server has lost them anyway
//!   (`FUNCTION FLUSH`, a new empty node), the call answers "Function not
//!   found" and the store loads the library and calls again.
//! - **EVALSHA** (older servers, or forced): one script per operation, the
//!   file followed by `return <op>(KEYS, ARGV)`; `redis::Script` loads it
//!   on `NOSCRIPT`.
//!
//! `<v>` is the start of the SHA-1 of the file, so instances of different
//! versions sharing one Redis each call their own functions.

use redis::Script;

const SOURCE: &str = include_str!("streamguard.lua");

/// How the store calls the scripts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScriptCalls {
    /// Functions (`FCALL`) when the server has them, else `EVALSHA`.
    Auto,
    /// `EVALSHA` whatever the server: what Redis < 7 gets.
    Evalsha,
}

/// One decision's script.
#[derive(Clone, Copy, Debug)]
pub(super) enum Op {
    Start,
    Heartbeat,
    End,
    View,
    SetLimit,
    SetPlan,
    Resume,
}

impl Op {
    const ALL: [Op; 7] = [
        Op::Start,
        Op::Heartbeat,
        Op::End,
        Op::View,
        Op::SetLimit,
        Op::SetPlan,
        Op::Resume,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::Start => "start",
            Op::Heartbeat => "heartbeat",
            Op::End => "end",
            Op::View => "view",
            Op::SetLimit => "set_limit",
            Op::SetPlan => "set_plan",
            Op::Resume => "resume",
        }
    }

    /// The Lua function that runs it (`end` is a Lua keyword).
    fn lua_function(self) -> &'static str {
        match self {
            Op::End => "finish",
            other => other.name(),
        }
    }
}

pub(super) struct Scripts {
    version: String,
    evalsha: [Script; 7],
}

impl Scripts {
    pub fn new() -> Self {
        let version = Script::new(SOURCE).get_hash()[..12].to_owned();
        let evalsha = Op::ALL.map(|op| {
            Script::new(&format!(
                "{SOURCE}\nreturn {}(KEYS, ARGV)\n",
                op.lua_function()
            ))
        });
        Self { version, evalsha }
    }

    /// The library's source for `FUNCTION LOAD`.
    pub fn library(&self) -> String {
        let mut library = format!("#!lua name=streamguard_{}\n{SOURCE}\n", self.version);
        for op in Op::ALL {
            library.push_str(&format!(
                "redis.register_function('{}', {})\n",
                self.function(op),
                op.lua_function()
            ));
        }
        library
    }

    /// The name `FCALL` calls for `op`.
    pub fn function(&self, op: Op) -> String {
        format!("sg_{}_{}", self.version, op.name())
    }

    pub fn evalsha(&self, op: Op) -> &Script {
        &self.evalsha[op as usize]
    }
}
