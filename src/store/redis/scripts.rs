//! The Lua scripts, each the shared prelude followed by one operation.
//! `redis::Script` sends `EVALSHA` and loads the script only on `NOSCRIPT`.

use redis::Script;

macro_rules! script {
    ($file:literal) => {
        Script::new(concat!(
            include_str!("common.lua"),
            "\n",
            include_str!($file)
        ))
    };
}

pub(super) struct Scripts {
    pub start: Script,
    pub heartbeat: Script,
    pub end: Script,
    pub view: Script,
    pub set_limit: Script,
}

impl Scripts {
    pub fn new() -> Self {
        Self {
            start: script!("start.lua"),
            heartbeat: script!("heartbeat.lua"),
            end: script!("end.lua"),
            view: script!("view.lua"),
            set_limit: script!("set_limit.lua"),
        }
    }
}
