//! What the seed's customers look like: users, agents, pipelines and their runs.

use cygnet_proto::v1 as pb;

pub(crate) fn step(name: &str, command: &str) -> pb::Step {
    pb::Step {
        name: name.into(),
        command: command.into(),
        ..Default::default()
    }
}

/// A seeded pipeline: name, steps as (name, command), the agent label it runs on, and its runs
/// (whether each one is made to fail).
pub(crate) type PipelineSeed = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
    &'static [bool],
);

/// What one customer of the seed looks like.
pub(crate) struct Seed {
    pub(crate) name: &'static str,
    pub(crate) display_name: &'static str,
    pub(crate) domain: &'static str,
    /// (username, role)
    pub(crate) users: &'static [(&'static str, pb::Role)],
    /// (uuid, labels, stays online)
    pub(crate) agents: &'static [(&'static str, &'static [&'static str], bool)],
    pub(crate) pipelines: &'static [PipelineSeed],
}

pub(crate) const BUILD: &[(&str, &str)] = &[
    ("Build", "echo compiling {{SERVICE}}; sleep 0.2"),
    ("Test", "echo running unit tests; test {{FAIL}} = no"),
    (
        "Package",
        "mkdir -p dist && echo {{SERVICE}} > dist/{{SERVICE}}.txt",
    ),
    ("Deploy", "echo deploying {{SERVICE}}"),
];
pub(crate) const WEB: &[(&str, &str)] = &[
    ("Install", "echo installing packages"),
    ("Build", "echo bundling {{SERVICE}}; test {{FAIL}} = no"),
    ("Deploy", "echo publishing {{SERVICE}}"),
];
pub(crate) const TESTS: &[(&str, &str)] = &[
    ("Setup", "echo starting fixtures"),
    ("Run Tests", "echo 42 tests; test {{FAIL}} = no"),
];

pub(crate) const SEEDS: &[Seed] = &[
    Seed {
        name: "acme",
        display_name: "Acme Corporation",
        domain: "acme.com",
        users: &[
            ("admin", pb::Role::Admin),
            ("dev1", pb::Role::Developer),
            ("dev2", pb::Role::Developer),
            ("qa", pb::Role::Qa),
            ("ops", pb::Role::Devops),
        ],
        agents: &[
            ("acme-prod-001", &["production", "linux"], true),
            ("acme-staging-001", &["staging", "linux"], true),
            ("acme-dev-001", &["development", "linux"], false),
        ],
        pipelines: &[
            (
                "Build API Service",
                BUILD,
                "production",
                &[false, false, true, false],
            ),
            ("Build Web Frontend", WEB, "production", &[false, false]),
            ("Integration Tests", TESTS, "staging", &[false, true, false]),
            ("Database Migrations", TESTS, "staging", &[false]),
            ("Nightly Security Scan", TESTS, "staging", &[false, true]),
        ],
    },
    Seed {
        name: "techstart",
        display_name: "TechStart Inc",
        domain: "techstart.com",
        users: &[("admin", pb::Role::Admin), ("dev", pb::Role::Developer)],
        agents: &[
            ("tech-001", &["production", "linux"], true),
            ("tech-002", &["development", "linux"], true),
        ],
        pipelines: &[
            ("Mobile App", WEB, "production", &[false, false]),
            ("Backend", BUILD, "production", &[false]),
            ("Smoke Tests", TESTS, "development", &[false]),
        ],
    },
    Seed {
        name: "globalco",
        display_name: "GlobalCo",
        domain: "globalco.com",
        users: &[("admin", pb::Role::Admin), ("viewer", pb::Role::Viewer)],
        agents: &[("global-001", &["production", "linux"], true)],
        pipelines: &[("Website", WEB, "production", &[false])],
    },
];
