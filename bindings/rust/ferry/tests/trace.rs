//! Runtime::trace_start/stop/dump on the sim backend.

use ferry::{Backend, Runtime, Status};

#[test]
fn a_trace_of_a_pass_names_every_acquired_group() {
    let rt = Runtime::builder()
        .backend(Backend::Sim)
        .name("rust-trace")
        .vram_budget(3 * 8192)
        .build()
        .unwrap();
    let groups: Vec<_> = (0..6)
        .map(|g| {
            let group = rt.define_group(&format!("g{g}")).unwrap();
            rt.define_tensor(group, "w", 8192).unwrap();
            group
        })
        .collect();
    rt.plan().unwrap();
    rt.seal().unwrap();
    rt.trace_start(0).unwrap();
    for &group in &groups {
        rt.acquire(group).unwrap().release().unwrap();
    }
    rt.trace_stop().unwrap();
    rt.synchronize().unwrap();
    let path = std::env::temp_dir().join(format!("ferry-rust-trace-{}.json", std::process::id()));
    rt.trace_dump(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(text.starts_with('{') && text.trim_end().ends_with('}'));
    for g in 0..6 {
        assert!(
            text.contains(&format!("\"name\":\"acquire g{g}\"")),
            "{text}"
        );
    }
}

#[test]
fn dumping_without_a_trace_is_wrong_phase() {
    let rt = Runtime::builder()
        .backend(Backend::Sim)
        .vram_budget(1 << 20)
        .build()
        .unwrap();
    let err = rt
        .trace_dump(std::path::Path::new("/tmp/unused.json"))
        .unwrap_err();
    assert_eq!(err.status(), Status::WrongPhase, "{err}");
}
