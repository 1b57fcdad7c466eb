//! The safe API on the sim backend, where "device" memory is host memory: every streamed
//! byte is checked through the device pointers.

use ferry::{sys, Backend, DType, Group, Phase, Runtime, Status, Tensor, TensorOptions};
use std::ffi::CString;
use std::ptr;

const GROUPS: usize = 6;

/// Tensor sizes of group `g`: groups differ a little in size, and no size is a multiple of
/// the 256-byte alignment, so packing is exercised.
fn tensor_sizes(g: usize) -> [u64; 3] {
    [30_000 + 1_000 * g as u64, 8_192, 777 + g as u64]
}

fn model_bytes() -> u64 {
    (0..GROUPS)
        .map(|g| tensor_sizes(g).iter().sum::<u64>())
        .sum()
}

/// The byte at offset `i` of tensor `t` of group `g`.
fn pattern(g: usize, t: usize, i: usize) -> u8 {
    let x = (i as u32).wrapping_mul(2_654_435_761) ^ ((g as u32) << 24) ^ ((t as u32) << 16);
    (x ^ (x >> 13) ^ (x >> 27)) as u8
}

fn expected(g: usize, t: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| pattern(g, t, i)).collect()
}

struct Model<'rt> {
    groups: Vec<Group<'rt>>,
    tensors: Vec<Vec<Tensor<'rt>>>,
}

fn sim() -> ferry::RuntimeBuilder {
    Runtime::builder().backend(Backend::Sim).name("rust-test")
}

fn define_model(rt: &Runtime) -> Model<'_> {
    let mut model = Model {
        groups: Vec::new(),
        tensors: Vec::new(),
    };
    for g in 0..GROUPS {
        let group = rt.define_group(&format!("block.{g}")).unwrap();
        let sizes = tensor_sizes(g);
        let tensors = vec![
            rt.define_tensor(group, "attn.weight", sizes[0]).unwrap(),
            rt.define_tensor_with(
                group,
                "mlp.weight",
                sizes[1],
                &TensorOptions::new().dtype(DType::F32).shape(&[32, 64]),
            )
            .unwrap(),
            rt.define_tensor(group, "norm.bias", sizes[2]).unwrap(),
        ];
        model.groups.push(group);
        model.tensors.push(tensors);
    }
    model
}

/// Loads every tensor: some through copy-in (in two pieces), some in place.
fn load_model(rt: &Runtime, model: &Model<'_>) {
    for (g, tensors) in model.tensors.iter().enumerate() {
        for (t, &tensor) in tensors.iter().enumerate() {
            let bytes = expected(g, t, tensor.bytes() as usize);
            if (g + t) % 2 == 0 {
                let half = bytes.len() / 2;
                rt.copy_in(tensor, 0, &bytes[..half]).unwrap();
                rt.copy_in(tensor, half as u64, &bytes[half..]).unwrap();
            } else {
                let mut host = rt.host_bytes_mut(tensor).unwrap();
                assert_eq!(host.len(), bytes.len());
                host.copy_from_slice(&bytes);
            }
        }
    }
}

/// One pass over the model in order, checking every byte of every tensor on the device.
fn run_pass(rt: &Runtime, model: &Model<'_>) {
    for (g, &group) in model.groups.iter().enumerate() {
        let held = rt.acquire(group).unwrap();
        for (t, &tensor) in model.tensors[g].iter().enumerate() {
            let device = held.sim_device_bytes(tensor).unwrap();
            assert!(
                device == expected(g, t, device.len()).as_slice(),
                "group {g} tensor {t}: device bytes differ"
            );
        }
    }
}

fn check_invariants(rt: &Runtime, passes: u64) -> ferry::Stats {
    let stats = rt.stats().unwrap();
    assert_eq!(stats.backend, Backend::Sim);
    assert_eq!(stats.phase, Phase::Sealed);
    assert_eq!(
        stats.acquires,
        stats.resident_hits + stats.hits + stats.misses,
        "{stats:?}"
    );
    assert_eq!(stats.acquires, passes * GROUPS as u64, "{stats:?}");
    assert_eq!(stats.releases, stats.acquires, "{stats:?}");
    assert_eq!(
        stats.bytes_d2h, 0,
        "frozen weights are never copied back: {stats:?}"
    );
    assert_eq!(stats.writebacks, 0, "{stats:?}");
    assert_eq!(stats.groups, GROUPS as u64);
    assert_eq!(stats.model_bytes, model_bytes());
    assert!(stats.slab_bytes <= stats.vram_budget, "{stats:?}");
    assert!(
        stats.resident_groups < GROUPS as u64,
        "budget is below the model: {stats:?}"
    );
    assert!(stats.streaming_slots >= 2, "{stats:?}");
    assert!(stats.streamed_bytes_per_pass > 0, "{stats:?}");
    assert!(
        stats.bytes_h2d >= stats.model_bytes,
        "every byte was copied once: {stats:?}"
    );
    assert!(stats.host_pinned_bytes >= stats.model_bytes, "{stats:?}");
    stats
}

#[test]
fn streams_a_model_larger_than_the_budget() {
    let budget = model_bytes() / 2;
    let rt = sim().vram_budget(budget).build().unwrap();
    assert_eq!(rt.backend(), Backend::Sim);
    assert_eq!(rt.phase().unwrap(), Phase::Define);
    let model = define_model(&rt);
    rt.plan().unwrap();
    assert_eq!(rt.phase().unwrap(), Phase::Planned);
    load_model(&rt, &model);
    rt.seal().unwrap();
    assert_eq!(rt.phase().unwrap(), Phase::Sealed);

    // Immutable host bytes are readable (read-only) after seal.
    for (g, tensors) in model.tensors.iter().enumerate() {
        for (t, &tensor) in tensors.iter().enumerate() {
            let host = rt.host_bytes(tensor).unwrap();
            assert!(
                host == expected(g, t, host.len()).as_slice(),
                "host g{g} t{t}"
            );
        }
    }

    let mut streamed = 0;
    for &group in &model.groups {
        let info = rt.group_info(group).unwrap();
        let defined: u64 = model.tensors[model.groups.iter().position(|&x| x == group).unwrap()]
            .iter()
            .map(|t| t.bytes())
            .sum();
        assert!(info.image_bytes >= defined, "{info:?}");
        assert_eq!(info.resident, info.size_class.is_none(), "{info:?}");
        assert!(info.resident_bytes <= info.image_bytes, "{info:?}");
        if info.resident {
            assert_eq!(info.resident_bytes, info.image_bytes, "{info:?}");
        }
        streamed += u64::from(!info.resident);
    }
    assert!(streamed > 0);

    const PASSES: u64 = 4;
    for _ in 0..PASSES {
        run_pass(&rt, &model);
    }
    let stats = check_invariants(&rt, PASSES);
    assert_eq!(stats.vram_budget, budget);
    assert!(stats.passes >= PASSES - 1, "{stats:?}");
    assert!(stats.misses + stats.hits > 0, "{stats:?}");
    rt.synchronize().unwrap();
    rt.close().unwrap();
}

#[test]
fn chaos_with_a_declared_schedule_and_modeled_bandwidth() {
    let rt = sim()
        .vram_budget(140_000) // three slots of the largest group, below the model
        .slots_per_class(3)
        .sim_chaos(true)
        .sim_seed(0x5eed)
        .sim_h2d_gbps(2.0)
        .sim_latency_us(20.0)
        .build()
        .unwrap();
    let model = define_model(&rt);
    // Each pass visits block.0 twice, like a model that reuses its first block.
    let mut order = model.groups.clone();
    order.insert(3, model.groups[0]);
    rt.declare_schedule(&order).unwrap();
    rt.plan().unwrap();
    load_model(&rt, &model);
    rt.seal().unwrap();
    const PASSES: u64 = 3;
    for _ in 0..PASSES {
        for &group in &order {
            let g = model.groups.iter().position(|&x| x == group).unwrap();
            let held = rt.acquire(group).unwrap();
            for (t, &tensor) in model.tensors[g].iter().enumerate() {
                let device = held.sim_device_bytes(tensor).unwrap();
                assert!(
                    device == expected(g, t, device.len()).as_slice(),
                    "g{g} t{t}"
                );
            }
            held.release().unwrap();
        }
    }
    let stats = rt.stats().unwrap();
    assert_eq!(stats.acquires, PASSES * order.len() as u64);
    assert_eq!(
        stats.acquires,
        stats.resident_hits + stats.hits + stats.misses,
        "{stats:?}"
    );
    assert_eq!(stats.bytes_d2h, 0);
}

#[test]
fn synchronous_mode() {
    let rt = sim()
        .vram_budget(model_bytes() / 2)
        .synchronous(true)
        .build()
        .unwrap();
    let model = define_model(&rt);
    rt.plan().unwrap();
    load_model(&rt, &model);
    rt.seal().unwrap();
    for _ in 0..2 {
        run_pass(&rt, &model);
    }
    let stats = check_invariants(&rt, 2);
    assert_eq!(
        stats.prefetches_issued, 0,
        "synchronous mode does not prefetch: {stats:?}"
    );
}

#[test]
fn one_runtime_from_several_threads() {
    // Three slots per class: two threads hold at most two groups at once.
    let rt = sim()
        .vram_budget(model_bytes() * 3 / 5)
        .slots_per_class(3)
        .build()
        .unwrap();
    let model = define_model(&rt);
    rt.plan().unwrap();
    // Load in parallel: each thread fills the tensors of some groups in place.
    std::thread::scope(|s| {
        for part in 0..2 {
            let (rt, model) = (&rt, &model);
            s.spawn(move || {
                for g in (part..GROUPS).step_by(2) {
                    for (t, &tensor) in model.tensors[g].iter().enumerate() {
                        let mut host = rt.host_bytes_mut(tensor).unwrap();
                        host.copy_from_slice(&expected(g, t, tensor.bytes() as usize));
                    }
                }
            });
        }
    });
    rt.seal().unwrap();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..3 {
                    run_pass(&rt, &model);
                }
            });
        }
    });
    let stats = rt.stats().unwrap();
    assert_eq!(stats.acquires, 2 * 3 * GROUPS as u64);
    assert_eq!(
        stats.acquires,
        stats.resident_hits + stats.hits + stats.misses,
        "{stats:?}"
    );
    assert_eq!(stats.bytes_d2h, 0);

    // A runtime and an acquired group may move to another thread.
    let held = rt.acquire(model.groups[1]).unwrap();
    std::thread::scope(|s| {
        s.spawn(move || held.release().unwrap());
    });
    drop(model);
    std::thread::spawn(move || rt.close().unwrap())
        .join()
        .unwrap();
}

#[test]
fn wrong_phase() {
    let rt = sim().vram_budget(1 << 20).build().unwrap();
    let group = rt.define_group("g").unwrap();
    let tensor = rt.define_tensor(group, "t", 1000).unwrap();

    // DEFINE: no acquire, no host bytes, no copy-in, no seal.
    let err = rt.acquire(group).unwrap_err();
    assert_eq!(err.status(), Status::WrongPhase, "{err}");
    assert!(!err.message().is_empty());
    assert!(err.to_string().contains(err.message()));
    assert_eq!(
        rt.copy_in(tensor, 0, &[1; 10]).unwrap_err().status(),
        Status::WrongPhase
    );
    assert_eq!(
        rt.host_bytes_mut(tensor).unwrap_err().status(),
        Status::WrongPhase
    );
    assert_eq!(rt.seal().unwrap_err().status(), Status::WrongPhase);

    rt.plan().unwrap();
    // PLANNED: no more defining, no second plan, no acquire yet, no read-only view yet.
    assert_eq!(
        rt.define_group("h").unwrap_err().status(),
        Status::WrongPhase
    );
    assert_eq!(
        rt.define_tensor(group, "u", 8).unwrap_err().status(),
        Status::WrongPhase
    );
    assert_eq!(rt.plan().unwrap_err().status(), Status::WrongPhase);
    assert_eq!(rt.acquire(group).unwrap_err().status(), Status::WrongPhase);
    assert_eq!(
        rt.host_bytes(tensor).unwrap_err().status(),
        Status::WrongPhase
    );
    rt.copy_in(tensor, 0, &[3; 1000]).unwrap();
    rt.seal().unwrap();

    // SEALED: host bytes are read-only, so no copy-in and no writable view.
    assert_eq!(
        rt.copy_in(tensor, 0, &[1; 10]).unwrap_err().status(),
        Status::WrongPhase
    );
    assert_eq!(
        rt.host_bytes_mut(tensor).unwrap_err().status(),
        Status::WrongPhase
    );
    assert_eq!(rt.seal().unwrap_err().status(), Status::WrongPhase);

    // The runtime stays usable after every failed call.
    let held = rt.acquire(group).unwrap();
    assert!(held
        .sim_device_bytes(tensor)
        .unwrap()
        .iter()
        .all(|&b| b == 3));
    drop(held);
    assert_eq!(rt.host_bytes(tensor).unwrap(), &[3u8; 1000][..]);
}

#[test]
fn budget_too_small_and_size_too_large() {
    // Two groups of 4 KiB and a 6 KiB budget: both resident needs 8 KiB, streaming needs
    // two slots of 4 KiB.
    let rt = sim().vram_budget(6 * 1024).build().unwrap();
    let group = rt.define_group("big").unwrap();
    rt.define_tensor(group, "w", 4 * 1024).unwrap();
    let second = rt.define_group("big2").unwrap();
    rt.define_tensor(second, "w", 4 * 1024).unwrap();
    let err = rt.plan().unwrap_err();
    assert_eq!(err.status(), Status::BudgetTooSmall, "{err}");
    assert!(!err.message().is_empty());
    assert_eq!(
        rt.phase().unwrap(),
        Phase::Define,
        "a failed plan changes nothing"
    );

    // A tensor that can never fit the budget is refused when defined.
    let err = rt.define_tensor(group, "huge", 7 * 1024).unwrap_err();
    assert_eq!(err.status(), Status::SizeTooLarge, "{err}");
}

#[test]
fn stale_foreign_and_invalid_handles() {
    // A handle of a destroyed runtime, made through the raw API (the safe API's lifetimes
    // make this impossible).
    let stale = {
        let mut config = std::mem::MaybeUninit::<sys::ferry_config>::zeroed();
        // Safety: ferry_config_init fills the whole struct.
        let mut config = unsafe {
            sys::ferry_config_init(config.as_mut_ptr());
            config.assume_init()
        };
        config.backend = sys::FERRY_BACKEND_SIM;
        config.vram_budget = 1 << 20;
        let mut raw = ptr::null_mut();
        let name = CString::new("doomed").unwrap();
        let mut group = sys::ferry_group::default();
        // Safety: valid config and out pointers; the runtime is destroyed once, here.
        unsafe {
            assert_eq!(sys::ferry_create(&config, &mut raw), sys::FERRY_OK);
            assert_eq!(
                sys::ferry_group_define(raw, name.as_ptr(), &mut group),
                sys::FERRY_OK
            );
            assert_eq!(sys::ferry_destroy(raw), sys::FERRY_OK);
        }
        group
    };

    let rt = sim().vram_budget(1 << 20).build().unwrap();
    let other = sim().vram_budget(1 << 20).build().unwrap();
    let group = rt.define_group("g").unwrap();
    rt.define_tensor(group, "t", 64).unwrap();
    let foreign = other.define_group("g").unwrap();

    let err = rt.group_info(Group::from_raw(&rt, stale)).unwrap_err();
    assert_eq!(err.status(), Status::StaleHandle, "{err}");
    let err = rt
        .define_tensor(Group::from_raw(&rt, stale), "t", 64)
        .unwrap_err();
    assert_eq!(err.status(), Status::StaleHandle, "{err}");
    let err = rt.define_tensor(foreign, "t", 64).unwrap_err();
    assert_eq!(err.status(), Status::ForeignHandle, "{err}");
    let zero = Group::from_raw(&rt, sys::ferry_group { id: 0 });
    assert_eq!(
        rt.define_tensor(zero, "t", 64).unwrap_err().status(),
        Status::InvalidHandle
    );

    rt.plan().unwrap();
    rt.seal().unwrap();
    let err = rt.acquire(Group::from_raw(&rt, stale)).unwrap_err();
    assert_eq!(err.status(), Status::StaleHandle, "{err}");
    assert_eq!(
        rt.acquire(foreign).unwrap_err().status(),
        Status::ForeignHandle
    );
    rt.acquire(group).unwrap().release().unwrap();
}

#[test]
fn double_release_through_the_raw_api() {
    let rt = sim().vram_budget(1 << 20).build().unwrap();
    let group = rt.define_group("g").unwrap();
    let tensor = rt.define_tensor(group, "t", 512).unwrap();
    rt.plan().unwrap();
    rt.copy_in(tensor, 0, &[9; 512]).unwrap();
    rt.seal().unwrap();

    let held = rt.acquire(group).unwrap();
    // Safety: a live runtime and a group of it; the guard still thinks it holds the group,
    // which is the point of the test.
    let status = unsafe { sys::ferry_release(rt.as_raw(), group.raw(), ptr::null_mut()) };
    assert_eq!(status, sys::FERRY_OK);
    let err = held.release().unwrap_err();
    assert_eq!(err.status(), Status::NotAcquired, "{err}");
    assert!(!err.message().is_empty());

    // Safety: as above.
    let status = unsafe { sys::ferry_release(rt.as_raw(), group.raw(), ptr::null_mut()) };
    assert_eq!(Status::from_raw(status), Status::NotAcquired);

    // Still usable; a device pointer outside an acquire is refused.
    let held = rt.acquire(group).unwrap();
    assert!(!held.device_ptr(tensor).unwrap().is_null());
    drop(held);
    // Safety: a live runtime and a tensor of it; out is a valid pointer.
    let status = unsafe {
        let mut out = ptr::null_mut();
        sys::ferry_tensor_device_ptr(rt.as_raw(), tensor.raw(), &mut out)
    };
    assert_eq!(Status::from_raw(status), Status::NotAcquired);
    let stats = rt.stats().unwrap();
    assert_eq!(stats.acquires, 2);
    assert_eq!(stats.releases, 2);
}

#[test]
fn no_free_slot_is_an_error_not_a_deadlock() {
    // Four equal groups, a budget of exactly two slots: nothing is resident.
    let rt = sim().vram_budget(2 * 4096).build().unwrap();
    let groups: Vec<_> = (0..4)
        .map(|g| {
            let group = rt.define_group(&format!("g{g}")).unwrap();
            rt.define_tensor(group, "t", 4096).unwrap();
            group
        })
        .collect();
    rt.plan().unwrap();
    rt.seal().unwrap();
    assert!(groups.iter().all(|&g| !rt.group_info(g).unwrap().resident));
    let a = rt.acquire(groups[0]).unwrap();
    let b = rt.acquire(groups[1]).unwrap();
    let err = rt.acquire(groups[2]).unwrap_err();
    assert_eq!(err.status(), Status::NoFreeSlot, "{err}");
    drop(a);
    let c = rt.acquire(groups[2]).unwrap();
    drop((b, c));
}

#[test]
fn host_byte_views_are_exclusive_and_end_before_seal() {
    let rt = sim().vram_budget(1 << 20).build().unwrap();
    let group = rt.define_group("g").unwrap();
    let a = rt.define_tensor(group, "a", 100).unwrap();
    let b = rt.define_tensor(group, "b", 100).unwrap();
    rt.plan().unwrap();
    let mut view = rt.host_bytes_mut(a).unwrap();
    view.fill(1);
    assert!(rt.host_bytes_mut(a).is_err(), "one view per tensor");
    assert!(rt.copy_in(a, 0, &[2]).is_err(), "no copy-in under a view");
    let mut other = rt.host_bytes_mut(b).unwrap();
    other.fill(2);
    assert_eq!(
        rt.seal().unwrap_err().status(),
        Status::WrongPhase,
        "no seal under a view"
    );
    drop((view, other));
    rt.copy_in(a, 99, &[7]).unwrap();
    rt.seal().unwrap();
    let held = rt.acquire(group).unwrap();
    let bytes = held.sim_device_bytes(a).unwrap();
    assert_eq!(&bytes[..99], &[1u8; 99][..]);
    assert_eq!(bytes[99], 7);
    assert_eq!(held.sim_device_bytes(b).unwrap(), &[2u8; 100][..]);
}

#[test]
fn mutable_tensors_are_written_back() {
    let rt = sim().vram_budget(1 << 20).build().unwrap();
    let group = rt.define_group("state").unwrap();
    let frozen = rt.define_tensor(group, "frozen", 256).unwrap();
    let state = rt
        .define_tensor_with(group, "kv", 1024, &TensorOptions::new().mutable(true))
        .unwrap();
    assert!(state.is_mutable() && !frozen.is_mutable());
    rt.plan().unwrap();
    rt.copy_in(frozen, 0, &[5; 256]).unwrap();
    rt.copy_in(state, 0, &[0; 1024]).unwrap();
    rt.seal().unwrap();
    assert_eq!(
        rt.host_bytes(state).unwrap_err().status(),
        Status::InvalidArgument
    );

    let held = rt.acquire(group).unwrap();
    assert!(
        held.sim_device_bytes(state).is_err(),
        "no shared view of mutable device bytes"
    );
    let device = held.device_ptr(state).unwrap().cast::<u8>();
    // Safety: sim device memory is host memory; the group is held, the tensor is 1024
    // bytes and mutable, and no other holder exists.
    unsafe { ptr::write_bytes(device, 0xab, 1024) };
    assert_eq!(rt.synchronize().unwrap_err().status(), Status::GroupBusy);
    held.release().unwrap();
    rt.synchronize().unwrap();

    let mut host = ptr::null_mut();
    // Safety: a live runtime and a tensor of it; after synchronize, with no group acquired
    // and no other thread, the mutable host bytes are current and not being written.
    let bytes = unsafe {
        assert_eq!(
            sys::ferry_tensor_host_ptr(rt.as_raw(), state.raw(), &mut host),
            0
        );
        std::slice::from_raw_parts(host.cast::<u8>(), 1024).to_vec()
    };
    assert!(bytes.iter().all(|&b| b == 0xab));
    let stats = rt.stats().unwrap();
    assert!(stats.writebacks >= 1, "{stats:?}");
    assert!(stats.bytes_d2h >= 1024, "{stats:?}");
}

#[test]
fn argument_errors() {
    assert_eq!(
        sim().build().unwrap_err().status(),
        Status::InvalidArgument,
        "budget required"
    );
    let err = sim()
        .vram_budget(1 << 20)
        .slots_per_class(1)
        .build()
        .unwrap_err();
    assert_eq!(err.status(), Status::InvalidArgument, "{err}");
    let err = sim()
        .vram_budget(1 << 20)
        .name("bad\0name")
        .build()
        .unwrap_err();
    assert_eq!(err.status(), Status::InvalidArgument, "{err}");

    let rt = sim().vram_budget(1 << 20).build().unwrap();
    assert_eq!(rt.plan().unwrap_err().status(), Status::Empty);
    let group = rt.define_group("g").unwrap();
    assert_eq!(
        rt.define_group("g").unwrap_err().status(),
        Status::DuplicateName
    );
    assert_eq!(
        rt.define_group("").unwrap_err().status(),
        Status::InvalidArgument
    );
    assert_eq!(
        rt.define_tensor(group, "zero", 0).unwrap_err().status(),
        Status::InvalidSize
    );
    let shaped = TensorOptions::new().dtype(DType::F16).shape(&[3, 5]);
    let err = rt.define_tensor_with(group, "s", 31, &shaped).unwrap_err();
    assert_eq!(err.status(), Status::InvalidSize, "{err}");
    let tensor = rt.define_tensor_with(group, "s", 30, &shaped).unwrap();
    assert_eq!(
        rt.define_tensor(group, "s", 8).unwrap_err().status(),
        Status::DuplicateName
    );
    rt.plan().unwrap();
    let err = rt.copy_in(tensor, 20, &[0; 11]).unwrap_err();
    assert_eq!(err.status(), Status::OutOfRange, "{err}");
    rt.copy_in(tensor, 20, &[0; 10]).unwrap();
}

#[test]
fn statuses_round_trip() {
    for raw in 0..=19 {
        let status = Status::from_raw(raw);
        assert!(!matches!(status, Status::Unknown(_)), "{raw}");
        assert_eq!(status.to_raw(), raw);
        assert!(!status.description().is_empty());
    }
    assert_eq!(Status::from_raw(sys::FERRY_OK), Status::Ok);
    assert_eq!(Status::from_raw(1000), Status::Unknown(1000));
    assert_eq!(Status::Unknown(1000).description(), "unknown status");
    assert_eq!(
        Status::WrongPhase.to_string(),
        Status::WrongPhase.description()
    );
    assert_eq!(ferry::version_number(), sys::FERRY_VERSION_NUMBER);
    assert_eq!(ferry::version(), "0.1.0");
}

#[test]
fn a_preferred_group_stays_resident_and_split_groups_keep_heads() {
    // Ten groups of four 64 KiB tensors at half the model: the planner splits groups, and
    // would keep the last one whole on the device; the first, preferred, is kept instead.
    let rt = sim().vram_budget(1280 << 10).build().unwrap();
    let groups: Vec<_> = (0..10)
        .map(|g| {
            let group = rt.define_group(&format!("g{g}")).unwrap();
            for t in 0..4 {
                rt.define_tensor(group, &format!("t{t}"), 64 << 10).unwrap();
            }
            group
        })
        .collect();
    rt.prefer_resident(groups[0]).unwrap();
    rt.plan().unwrap();
    let infos: Vec<_> = groups.iter().map(|&g| rt.group_info(g).unwrap()).collect();
    assert!(infos[0].resident, "{:?}", infos[0]);
    assert_eq!(infos[0].resident_bytes, infos[0].image_bytes);
    assert!(
        infos
            .iter()
            .any(|i| !i.resident && i.resident_bytes > 0 && i.resident_bytes < i.image_bytes),
        "{infos:?}"
    );
    let err = rt.prefer_resident(groups[0]).unwrap_err();
    assert_eq!(err.status(), ferry::Status::WrongPhase);
}

#[test]
fn declared_compute_in_define_and_planned_only() {
    let rt = sim().vram_budget(1 << 20).build().unwrap();
    let a = rt.define_group("a").unwrap();
    let b = rt.define_group("b").unwrap();
    rt.define_tensor(a, "t", 4096).unwrap();
    rt.define_tensor(b, "t", 4096).unwrap();
    rt.declare_compute(a, 2_000_000).unwrap();
    rt.plan().unwrap();
    rt.declare_compute(b, 1_000_000).unwrap();
    rt.seal().unwrap();
    assert_eq!(
        rt.declare_compute(a, 1).unwrap_err().status(),
        Status::WrongPhase
    );
}

#[test]
fn updates_of_frozen_tensors_reach_the_device_without_a_writeback() {
    let rt = sim()
        .vram_budget(model_bytes() / 2)
        .sim_chaos(true)
        .build()
        .unwrap();
    let model = define_model(&rt);
    let tensor = model.tensors[4][0];
    // Before seal: copy-in writes host bytes, update is refused.
    assert_eq!(
        rt.update(tensor, 0, &[1; 8]).unwrap_err().status(),
        Status::WrongPhase
    );
    rt.plan().unwrap();
    load_model(&rt, &model);
    rt.seal().unwrap();
    run_pass(&rt, &model);

    // Every tensor of every group, whatever its placement, gets new bytes in two pieces.
    let next = |g: usize, t: usize, len: usize| -> Vec<u8> {
        expected(g, t, len).iter().map(|b| b ^ 0x5a).collect()
    };
    for (g, tensors) in model.tensors.iter().enumerate() {
        for (t, &tensor) in tensors.iter().enumerate() {
            let bytes = next(g, t, tensor.bytes() as usize);
            let half = bytes.len() / 3;
            rt.update(tensor, 0, &bytes[..half]).unwrap();
            rt.update(tensor, half as u64, &bytes[half..]).unwrap();
            assert_eq!(rt.read(tensor).unwrap(), bytes);
        }
    }
    for (g, &group) in model.groups.iter().enumerate() {
        let held = rt.acquire(group).unwrap();
        for (t, &tensor) in model.tensors[g].iter().enumerate() {
            let device = held.sim_device_bytes(tensor).unwrap();
            assert!(device == next(g, t, device.len()).as_slice(), "g{g} t{t}");
        }
    }
    let stats = rt.stats().unwrap();
    assert_eq!(stats.bytes_d2h, 0, "{stats:?}");

    // Bad calls: each a clear error, nothing changed.
    let held = rt.acquire(model.groups[4]).unwrap();
    assert_eq!(
        rt.update(tensor, 0, &[1; 8]).unwrap_err().status(),
        Status::GroupBusy
    );
    drop(held);
    let end = tensor.bytes();
    assert_eq!(
        rt.update(tensor, end - 4, &[1; 8]).unwrap_err().status(),
        Status::OutOfRange
    );
    let other = sim().vram_budget(model_bytes()).build().unwrap();
    let foreign = define_model(&other).tensors[4][0];
    assert_eq!(
        rt.update(foreign, 0, &[1; 8]).unwrap_err().status(),
        Status::ForeignHandle
    );
    assert_eq!(rt.read(tensor).unwrap(), next(4, 0, end as usize));
    // Bytes lent out as a &[u8] never change under it: update refuses that tensor.
    let lent = rt.host_bytes(tensor).unwrap();
    let err = rt.update(tensor, 0, &[1; 8]).unwrap_err();
    assert_eq!(err.status(), Status::InvalidArgument);
    assert!(err.to_string().contains("host_bytes"), "{err}");
    assert_eq!(lent, next(4, 0, end as usize).as_slice());
}

#[test]
fn a_mutable_tensor_is_not_updated_but_written_on_the_device() {
    let rt = sim().vram_budget(1 << 20).build().unwrap();
    let group = rt.define_group("g").unwrap();
    let state = rt
        .define_tensor_with(group, "state", 256, &TensorOptions::new().mutable(true))
        .unwrap();
    rt.plan().unwrap();
    rt.seal().unwrap();
    let err = rt.update(state, 0, &[1; 8]).unwrap_err();
    assert_eq!(err.status(), Status::InvalidArgument);
    assert!(err.to_string().contains("is mutable"), "{err}");
}

#[test]
fn compress_sets_the_config_field() {
    let builder = sim().vram_budget(1 << 20).compress(true);
    assert_eq!(builder.raw_config().compress, 1);
    assert_eq!(sim().vram_budget(1 << 20).raw_config().compress, 0);
    let rt = builder.build().unwrap();
    assert_eq!(rt.stats().unwrap().compressed_groups, 0); // nothing sealed yet
}
