//! cgroup v2 and v1 reading from real cgroup files (tests/fixtures/README.md says where they
//! come from), laid out as Docker's systemd (v2) and cgroupfs (v1) drivers lay them out.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use spotfit_monitor::cgroup::{docker_cgroup, Cgroup};
use spotfit_monitor::procfs::FileReader;
use std::path::PathBuf;

fn fixtures(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

const V2_ID: &str = "4f2a9c0e7d3b4a1f8e6c5b2a1d0f9e8c7b6a5d4c3b2a1f0e9d8c7b6a5f4e3d2c";

#[test]
fn v2_container_found_by_id_prefix_and_read() {
    // GIVEN a v2 host where the container runs in system.slice/docker-<id>.scope
    let root = fixtures("cgroup2");
    // WHEN looked up by a short id prefix
    let cg = docker_cgroup(&V2_ID[..12], &root).unwrap();
    // THEN it is the v2 scope directory, and its counters are read in bytes and nanoseconds
    assert_eq!(cg, Cgroup::V2(root.join(format!("system.slice/docker-{V2_ID}.scope"))));
    let s = cg.read(&mut FileReader::default());
    assert_eq!(s.mem_usage_bytes, Some(4_460_544));
    assert_eq!(s.working_set_bytes, Some(4_460_544), "inactive_file is 0 here");
    assert_eq!(s.anon_bytes, Some(847_872));
    assert_eq!(s.mem_limit_bytes, None, "memory.max says max");
    assert_eq!(s.oom_kills, Some(0));
    assert_eq!(s.mem_limit_hits, Some(0));
    assert_eq!(s.cpu_usage_ns, Some(25_713_000));
    assert_eq!(
        s.cpu_throttled_ns, None,
        "the cpu controller is not enabled in this group"
    );
    assert_eq!(s.pgfault, Some(2380));
    assert_eq!(s.pgmajfault, Some(0));
    let mut procs = vec![];
    cg.procs(&mut FileReader::default(), &mut procs).unwrap();
    assert_eq!(procs, vec![1382, 1386, 1387, 1392]);
}

#[test]
fn v2_root_counters_io_and_throttling() {
    // GIVEN the root of the same v2 host (cpu controller on, real block devices)
    let root = fixtures("cgroup2");
    let cg = Cgroup::resolve(&root.to_string_lossy(), &root).unwrap();
    let s = cg.read(&mut FileReader::default());
    // THEN io.stat is summed over devices, lines without counters ignored
    assert_eq!(s.read_bytes, Some(127_950_848 + 1_756_931_072));
    assert_eq!(s.write_bytes, Some(7_618_560));
    assert_eq!(s.cpu_throttled_ns, Some(0));
    assert_eq!(s.cpu_usage_ns, Some(156_371_547_000));
    assert_eq!(s.anon_bytes, Some(2_170_880));
    // the root has no memory.current: no usage, hence no working set, and no error
    assert_eq!(s.mem_usage_bytes, None);
    assert_eq!(s.working_set_bytes, None);
}

#[test]
fn v1_container_found_under_the_memory_controller_and_read() {
    // GIVEN a v1 host with memory, cpu,cpuacct and blkio hierarchies, container under docker/<id>
    let root = fixtures("cgroup1");
    let cg = docker_cgroup("abc123", &root).unwrap();
    let Cgroup::V1 {
        memory,
        cpuacct,
        cpu,
        blkio,
        ..
    } = &cg
    else {
        panic!("not v1: {cg:?}")
    };
    assert!(memory.as_ref().unwrap().ends_with("memory/docker/abc123def456"));
    assert!(cpuacct.as_ref().unwrap().ends_with("cpu,cpuacct/docker/abc123def456"));
    assert_eq!(cpu, cpuacct, "a co-mounted cpu,cpuacct hierarchy serves both");
    assert!(blkio.is_some());
    // WHEN read  THEN usage minus inactive file is the working set; the page-rounded
    // i64::MAX limit means unlimited
    let s = cg.read(&mut FileReader::default());
    assert_eq!(s.mem_usage_bytes, Some(1_866_653_696));
    assert_eq!(s.working_set_bytes, Some(1_866_653_696 - 388_648_960));
    assert_eq!(s.anon_bytes, Some(1_111_785_472));
    assert_eq!(s.mem_limit_bytes, None);
    assert_eq!(s.mem_limit_hits, Some(0));
    assert_eq!(s.oom_kills, Some(0));
    assert_eq!(s.cpu_usage_ns, Some(2_995_369_898_370));
    assert_eq!(s.cpu_throttled_ns, Some(0));
    assert_eq!((s.read_bytes, s.write_bytes), (Some(0), Some(0)));
    assert_eq!((s.pgfault, s.pgmajfault), (Some(10_616_648), Some(569)));
    let mut procs = vec![];
    cg.procs(&mut FileReader::default(), &mut procs).unwrap();
    assert_eq!(procs.len(), 15);
}

#[test]
fn unknown_containers_and_paths_are_clear_errors() {
    let e = docker_cgroup("ffffeeee", &fixtures("cgroup2")).unwrap_err();
    assert!(e.to_string().contains("ffffeeee"), "{e}");
    let e = Cgroup::resolve("/no/such/group", &fixtures("cgroup1")).unwrap_err();
    assert!(e.to_string().contains("/no/such/group"), "{e}");
}
