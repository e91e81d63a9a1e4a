//! The shared-host rules, once: small and short jobs (sizing's `Shared` class) run in slots of a
//! warm host instead of an instance each. The simulator's replay (`spotfit-sim`) and the host
//! pool on AWS call these same functions; nothing here does I/O.
//!
//! A slot is a reservation on a host: cores as `cpu.weight` shares and memory as `memory.low`
//! when the host agent runs soft slots (a job may use what no co-tenant uses), or hard caps
//! (`cpu.max`, `memory.max` at the slot) otherwise. The rules:
//! - **admission** ([`admits`]): a host takes a slot where the reserved cores and the memory
//!   held (each slot at the larger of its reservation and its use, on soft hosts) leave room for
//!   it, and, on soft-CPU hosts, where the cores the job may need are really free;
//! - **what a slot is given** ([`grant`]): its reservation, plus on soft hosts the memory and
//!   cores its co-tenants leave free at its start;
//! - **the host type** ([`packed_host`]): the lowest price per slot it will hold, counting only
//!   the load the shared class has been measured to sustain ([`SlotWindow::load`]);
//! - **keep-alive** ([`keepalive_s`]): the ski-rental break-even;
//! - **who an overfull host sacrifices** ([`sacrifice`]): the slot furthest over its reservation;
//! - **a slot's cost** ([`slot_share`], [`slot_cost`]): its share of the host over its run.

use crate::cost::MIN_BILLED_S;
use std::borrow::Borrow;
use std::collections::VecDeque;

/// Float slack of the fit tests (cores and GiB are sums of fractions).
const EPS: f64 = 1e-9;

/// An instance type a host can be, with the price the pool pays for it.
#[derive(Debug, Clone, PartialEq)]
pub struct HostShape {
    pub name: String,
    pub vcpu: f64,
    pub mem_gib: f64,
    /// USD per hour.
    pub price: f64,
    pub gpu: u32,
}

/// One slot on a host: what it reserved and what its job really uses at most.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slot {
    /// Reserved cores (its `cpu.weight` share, or its `cpu.max` cap on a hard host).
    pub cpu: f64,
    /// Reserved memory, GiB (`memory.low`, or `memory.max` on a hard host).
    pub mem: f64,
    pub gpu: u32,
    /// Cores its job keeps busy (above `cpu` only on a soft-CPU host).
    pub used_cpu: f64,
    /// Its job's peak memory, GiB (above `mem` only on a soft-memory host).
    pub used_mem: f64,
}

/// How a host's slots are enforced (the host agent's cgroup settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SlotMode {
    /// Memory is `memory.low` (a reservation) with `memory.max` at the host's limit.
    pub soft_memory: bool,
    /// Cores are `cpu.weight` shares, not `cpu.max` caps.
    pub soft_cpu: bool,
}

/// A host as the rules see it: its type, the memory kept for the OS, its slots (anything that
/// holds a [`Slot`]: a pool keeps more per slot) and their mode.
#[derive(Debug)]
pub struct HostView<'a, S: Borrow<Slot> = Slot> {
    pub shape: &'a HostShape,
    /// GiB not given to slots (OS, agent, container runtime).
    pub reserve_gib: f64,
    pub slots: &'a [S],
    pub mode: SlotMode,
}

impl<S: Borrow<Slot>> Clone for HostView<'_, S> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<S: Borrow<Slot>> Copy for HostView<'_, S> {}

/// A slot asked for: its reservation, and the cores that must be really free for it (its
/// reservation, or the room a job whose need is not known yet may grow into).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlotRequest {
    pub cpu: f64,
    pub mem: f64,
    pub gpu: u32,
    pub free_cpu: f64,
}

/// What an admitted slot may use at its start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grant {
    /// Memory before its job is OOM-killed, GiB: the reservation, or on a soft host what no
    /// co-tenant holds (if more).
    pub mem_limit: f64,
    /// Cores it may use: the reservation, or on a soft-CPU host what no co-tenant holds.
    pub cores: f64,
}

impl<S: Borrow<Slot>> HostView<'_, S> {
    /// Memory the slots may have, GiB.
    pub fn usable_gib(&self) -> f64 {
        self.shape.mem_gib - self.reserve_gib
    }
    fn each(&self) -> impl Iterator<Item = &Slot> {
        self.slots.iter().map(Borrow::borrow)
    }
    fn reserved_cpu(&self) -> f64 {
        self.each().map(|s| s.cpu).sum()
    }
    /// Memory held: each slot's reservation, or on a soft host the larger of it and its use.
    fn held_mem(&self) -> f64 {
        let soft = self.mode.soft_memory;
        self.each()
            .map(|s| if soft { s.mem.max(s.used_mem) } else { s.mem })
            .sum()
    }
    /// Cores held: each slot's reservation or its use, the larger.
    fn held_cpu(&self) -> f64 {
        self.each().map(|s| s.cpu.max(s.used_cpu)).sum()
    }
}

/// Whether `host` admits `want`: the reserved cores, the memory held and the GPUs leave room
/// for it, a CPU slot never goes onto a GPU host (nor a GPU slot onto a CPU one), and on a
/// soft-CPU host `want.free_cpu` cores are really free (not only unreserved) — so a job within
/// its reservation is never killed for memory, and one still growing has room to grow.
pub fn admits<S: Borrow<Slot>>(host: &HostView<S>, want: &SlotRequest) -> bool {
    let used_gpu: u32 = host.each().map(|s| s.gpu).sum();
    let really_free_cpu = if host.mode.soft_cpu {
        host.shape.vcpu - host.held_cpu()
    } else {
        f64::INFINITY
    };
    host.reserved_cpu() + want.cpu <= host.shape.vcpu + EPS
        && really_free_cpu + EPS >= want.free_cpu
        && host.held_mem() + want.mem <= host.usable_gib() + EPS
        && (want.gpu == 0) == (host.shape.gpu == 0)
        && used_gpu + want.gpu <= host.shape.gpu
}

/// What a slot of `cpu` cores and `mem` GiB admitted to `host` may use at its start (on a new
/// host, `host.slots` is empty). Co-tenants are taken at their peaks for their whole run, which
/// is conservative.
pub fn grant<S: Borrow<Slot>>(host: &HostView<S>, cpu: f64, mem: f64) -> Grant {
    let mem_limit = if host.mode.soft_memory {
        mem.max(host.usable_gib() - host.held_mem())
    } else {
        mem
    };
    let cores = if host.mode.soft_cpu {
        cpu.max(host.shape.vcpu - host.held_cpu())
    } else {
        cpu
    };
    Grant { mem_limit, cores }
}

/// The slot an overfull soft-memory host kills first: the one furthest over its reservation
/// (a slot within its reservation is never the victim while another is over). `None` when no
/// slot is over its reservation. Ties: the later slot (the newer job has done less work).
pub fn sacrifice(slots: &[Slot]) -> Option<usize> {
    slots
        .iter()
        .enumerate()
        .filter(|(_, s)| s.used_mem > s.mem)
        .max_by(|a, b| {
            (a.1.used_mem - a.1.mem)
                .total_cmp(&(b.1.used_mem - b.1.mem))
                .then(a.0.cmp(&b.0))
        })
        .map(|(i, _)| i)
}

/// How long an empty host (or a finished dedicated run's instance) is kept warm before it is
/// terminated: keeping it costs its price per second; replacing it later costs the same type's
/// start-up plus the minimum-billing loss of a fresh instance (a fresh one bills at least
/// `MIN_BILLED_S` even for a job of ~0 s), i.e. `max(start-up, MIN_BILLED_S)` seconds of its
/// price. Waiting exactly that long and then terminating costs at most twice what the best
/// decision with hindsight would (the deterministic ski-rental bound), whatever arrives.
pub fn keepalive_s(startup_s: f64) -> f64 {
    startup_s.max(MIN_BILLED_S)
}

/// A slot's share of its host: the larger of its fraction of the cores and of the memory.
pub fn slot_share(shape: &HostShape, cpu: f64, mem: f64) -> f64 {
    (cpu / shape.vcpu).max(mem / shape.mem_gib)
}

/// What a slot costs: its share of the host's price over its run of `run_s` seconds. The
/// host's idle time (and the part of its capacity no slot reserves) is the pool's, not a job's:
/// the jobs' costs plus the idle cost add up to the hosts' bill.
pub fn slot_cost(shape: &HostShape, share: f64, run_s: f64) -> f64 {
    shape.price * share * run_s / 3600.0
}

/// The shared class's measured load: its expected number of concurrent slots and their mean
/// size, from [`SlotWindow::load`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlotLoad {
    /// Time-average number of slots running (Little's L, measured).
    pub concurrent: f64,
    pub mean_cpu: f64,
    pub mean_mem: f64,
}

impl SlotLoad {
    /// The load counted for a new host: no more than is present now (`running_now` slots,
    /// this one included) — capacity is counted only for load both sustained and present.
    pub fn capped(self, running_now: f64) -> SlotLoad {
        SlotLoad {
            concurrent: self.concurrent.min(running_now),
            ..self
        }
    }
}

/// Shared slots the load estimate looks back over (the profile's run window).
pub const SLOT_WINDOW: usize = 32;

/// The last [`SLOT_WINDOW`] shared slots (start, end, cores held, GiB), to estimate the load a
/// new shared host will serve.
#[derive(Debug, Default, Clone)]
pub struct SlotWindow {
    slots: VecDeque<(f64, f64, f64, f64)>,
}

impl SlotWindow {
    /// Records a slot that runs from `start` to `end` (seconds on any one clock) holding `cpu`
    /// cores (its use where above its reservation) and `mem` GiB.
    pub fn push(&mut self, start: f64, end: f64, cpu: f64, mem: f64) {
        if self.slots.len() == SLOT_WINDOW {
            self.slots.pop_front();
        }
        self.slots.push_back((start, end, cpu, mem));
    }

    /// The time-average number of shared slots running since the oldest recent slot started
    /// (each slot counts the part of its run seen by `now`, so one still running counts only
    /// what has elapsed), with the mean slot. `None` before two slots were seen.
    pub fn load(&self, now: f64) -> Option<SlotLoad> {
        let n = self.slots.len();
        let first = self.slots.front()?;
        let span = now - first.0;
        if n < 2 || span <= 0.0 {
            return None;
        }
        let busy: f64 = self.slots.iter().map(|s| (s.1.min(now) - s.0).max(0.0)).sum();
        let k = n as f64;
        let cpu = self.slots.iter().map(|s| s.2).sum::<f64>() / k;
        let mem = self.slots.iter().map(|s| s.3).sum::<f64>() / k;
        Some(SlotLoad {
            concurrent: busy / span,
            mean_cpu: cpu,
            mean_mem: mem,
        })
    }
}

/// The smallest measured load worth a host bought per slot: below two concurrent slots a
/// bigger host would idle, and the type ranking's pick for the opening job is used instead.
pub const PACK_FROM_CONCURRENT: f64 = 2.0;

/// The type for a new shared host opened by a slot of (`cpu`, `mem` GiB): the lowest price per
/// slot it will hold under `load`. A host is counted for at most `load.concurrent` slots
/// (capacity beyond the expected load may never be used) and at least the opening one; it
/// must hold the opening slot and the OS reserve, and be no GPU type. `None` when the load is
/// below [`PACK_FROM_CONCURRENT`] or nothing fits: the caller opens the type ranking chose.
pub fn packed_host(types: &[HostShape], reserve_gib: f64, cpu: f64, mem: f64, load: SlotLoad) -> Option<&HostShape> {
    if load.concurrent < PACK_FROM_CONCURRENT {
        return None;
    }
    types
        .iter()
        .filter(|s| s.gpu == 0 && s.vcpu + EPS >= cpu && s.mem_gib - reserve_gib + EPS >= mem)
        .map(|s| {
            let holds = (s.vcpu / load.mean_cpu.max(1e-6))
                .min((s.mem_gib - reserve_gib) / load.mean_mem.max(1e-6))
                .floor()
                .min(load.concurrent.floor())
                .max(1.0);
            (s, s.price / holds)
        })
        .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.price.total_cmp(&b.0.price)))
        .map(|(s, _)| s)
}

/// A host of the pool as the pool manager sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolHost {
    pub id: String,
    pub shape: HostShape,
    /// Its running slots.
    pub slots: Vec<Slot>,
    /// Since when it has had no slot (seconds on the caller's clock); `None` while busy.
    pub idle_since_s: Option<f64>,
    /// Draining: it takes no new slot (its instance is to be terminated once empty).
    pub draining: bool,
}

/// The pool's limits and how its hosts run slots.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolSettings {
    /// The most hosts the pool may have at once (running, starting and planned).
    pub max_hosts: usize,
    /// [`keepalive_s`] of the start-up, unless configured.
    pub keepalive_s: f64,
    pub reserve_gib: f64,
    pub mode: SlotMode,
}

/// What the pool manager does next.
#[derive(Debug, Clone, PartialEq)]
pub enum PoolAction {
    /// Launch a host of this type; it will take the queued slots listed (indexes into the queue).
    Open { shape: HostShape, takes: Vec<usize> },
    /// Terminate this idle host: empty for its keep-alive, and no queued slot needs it.
    Retire { id: String },
}

/// The pool manager's plan for one look at the queue: queued slots go first-fit onto the hosts
/// that admit them (in order, as the host agents will take them: reservations counted as used);
/// what no host admits opens a new host — [`packed_host`] under the measured `load` (capped at
/// the demand now: the running slots plus the queue), else `fallback` (the type ranking picks
/// for that slot) — filled first-fit by the slots after it, while the pool is under
/// `max_hosts`; a slot beyond the ceiling waits in the queue. Hosts empty for the keep-alive
/// that took nothing are retired.
pub fn plan_pool(
    hosts: &[PoolHost],
    queued: &[SlotRequest],
    types: &[HostShape],
    fallback: impl Fn(&SlotRequest) -> Option<HostShape>,
    load: Option<SlotLoad>,
    now_s: f64,
    settings: &PoolSettings,
) -> Vec<PoolAction> {
    let taken = |r: &SlotRequest| Slot {
        cpu: r.cpu,
        mem: r.mem,
        gpu: r.gpu,
        used_cpu: r.cpu,
        used_mem: r.mem,
    };
    let mut live: Vec<(usize, Vec<Slot>)> = hosts
        .iter()
        .enumerate()
        .filter(|(_, h)| !h.draining)
        .map(|(i, h)| (i, h.slots.clone()))
        .collect();
    let mut took = vec![false; hosts.len()];
    let mut planned: Vec<(HostShape, Vec<Slot>, Vec<usize>)> = Vec::new();
    let running: usize = hosts.iter().map(|h| h.slots.len()).sum();
    let demand = (running + queued.len()) as f64;
    let fits = |shape: &HostShape, slots: &[Slot], r: &SlotRequest| {
        admits(
            &HostView {
                shape,
                reserve_gib: settings.reserve_gib,
                slots,
                mode: settings.mode,
            },
            r,
        )
    };
    for (q, r) in queued.iter().enumerate() {
        if let Some((i, slots)) = live.iter_mut().find(|(i, slots)| fits(&hosts[*i].shape, slots, r)) {
            slots.push(taken(r));
            took[*i] = true;
            continue;
        }
        if let Some((_, slots, takes)) = planned.iter_mut().find(|(shape, slots, _)| fits(shape, slots, r)) {
            slots.push(taken(r));
            takes.push(q);
            continue;
        }
        if hosts.iter().filter(|h| !h.draining).count() + planned.len() >= settings.max_hosts {
            continue;
        }
        let shape = load
            .and_then(|l| {
                packed_host(
                    types,
                    settings.reserve_gib,
                    r.free_cpu.max(r.cpu),
                    r.mem,
                    l.capped(demand),
                )
            })
            .cloned()
            .or_else(|| fallback(r));
        if let Some(shape) = shape.filter(|s| fits(s, &[], r)) {
            planned.push((shape, vec![taken(r)], vec![q]));
        }
    }
    let mut actions: Vec<PoolAction> = planned
        .into_iter()
        .map(|(shape, _, takes)| PoolAction::Open { shape, takes })
        .collect();
    for (i, h) in hosts.iter().enumerate() {
        let idle_for = h.idle_since_s.map(|t| now_s - t);
        if h.slots.is_empty() && !took[i] && idle_for.is_some_and(|d| d + EPS >= settings.keepalive_s) {
            actions.push(PoolAction::Retire { id: h.id.clone() });
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn shape(name: &str, vcpu: f64, mem_gib: f64, price: f64) -> HostShape {
        HostShape {
            name: name.into(),
            vcpu,
            mem_gib,
            price,
            gpu: 0,
        }
    }
    fn slot(cpu: f64, mem: f64, used_cpu: f64, used_mem: f64) -> Slot {
        Slot {
            cpu,
            mem,
            gpu: 0,
            used_cpu,
            used_mem,
        }
    }
    fn want(cpu: f64, mem: f64) -> SlotRequest {
        SlotRequest {
            cpu,
            mem,
            gpu: 0,
            free_cpu: cpu,
        }
    }
    const SOFT: SlotMode = SlotMode {
        soft_memory: true,
        soft_cpu: true,
    };

    #[test]
    fn admission_counts_reservations_and_on_soft_hosts_what_is_really_used() {
        let h = shape("m.large", 4.0, 16.0, 0.1);
        // Two 1-core 4-GiB slots on a 4-core 16-GiB host with 1 GiB reserved: one more fits,
        // a 2-core one fits, a 3-core one does not; 8 GiB does not (16 - 1 - 8 = 7 left).
        let slots = [slot(1.0, 4.0, 1.0, 4.0), slot(1.0, 4.0, 1.0, 4.0)];
        let hard = HostView {
            shape: &h,
            reserve_gib: 1.0,
            slots: &slots,
            mode: SlotMode::default(),
        };
        assert!(admits(&hard, &want(1.0, 4.0)));
        assert!(admits(&hard, &want(2.0, 7.0)));
        assert!(!admits(&hard, &want(3.0, 1.0)));
        assert!(!admits(&hard, &want(1.0, 8.0)));
        // On a soft host a co-tenant over its reservation holds what it uses
        let busy = [slot(1.0, 4.0, 2.5, 9.0)];
        let soft = HostView {
            slots: &busy,
            mode: SOFT,
            ..hard
        };
        assert!(!admits(&soft, &want(1.0, 7.0)), "9 GiB held + 7 > 15 usable");
        assert!(admits(&soft, &want(1.0, 6.0)));
        // ... and cores: 2.5 busy leaves 1.5 really free, so a job that may need 2 waits
        assert!(!admits(
            &soft,
            &SlotRequest {
                free_cpu: 2.0,
                ..want(1.0, 1.0)
            }
        ));
        assert!(admits(
            &soft,
            &SlotRequest {
                free_cpu: 1.5,
                ..want(1.0, 1.0)
            }
        ));
        // A CPU slot never lands on a GPU host
        let g = HostShape { gpu: 1, ..h.clone() };
        assert!(!admits(
            &HostView {
                shape: &g,
                slots: &[],
                ..hard
            },
            &want(1.0, 1.0)
        ));
    }

    #[test]
    fn a_soft_slot_is_given_what_its_co_tenants_leave_free() {
        let h = shape("m.large", 4.0, 16.0, 0.1);
        let slots = [slot(1.0, 4.0, 2.0, 6.0)];
        let soft = HostView {
            shape: &h,
            reserve_gib: 1.0,
            slots: &slots,
            mode: SOFT,
        };
        assert_eq!(
            grant(&soft, 1.0, 2.0),
            Grant {
                mem_limit: 9.0,
                cores: 2.0
            }
        );
        let hard = HostView {
            mode: SlotMode::default(),
            ..soft
        };
        assert_eq!(
            grant(&hard, 1.0, 2.0),
            Grant {
                mem_limit: 2.0,
                cores: 1.0
            }
        );
        // A new host: the whole host but the reserve
        let empty = HostView { slots: &[], ..soft };
        assert_eq!(
            grant(&empty, 1.0, 2.0),
            Grant {
                mem_limit: 15.0,
                cores: 4.0
            }
        );
    }

    #[test]
    fn an_overfull_host_sacrifices_the_slot_furthest_over_its_reservation() {
        let slots = [
            slot(1.0, 4.0, 1.0, 5.0),
            slot(1.0, 2.0, 1.0, 6.0),
            slot(1.0, 8.0, 1.0, 8.0),
        ];
        assert_eq!(sacrifice(&slots), Some(1));
        assert_eq!(sacrifice(&slots[2..]), None, "within its reservation: never the victim");
        assert_eq!(
            sacrifice(&[slot(1.0, 1.0, 1.0, 2.0), slot(1.0, 1.0, 1.0, 2.0)]),
            Some(1)
        );
    }

    #[test]
    fn the_host_type_is_the_cheapest_per_slot_the_measured_load_fills() {
        let types = [
            shape("small", 2.0, 8.0, 0.10),
            shape("big", 8.0, 32.0, 0.32),
            shape("huge", 32.0, 128.0, 1.40),
        ];
        let load = |l| SlotLoad {
            concurrent: l,
            mean_cpu: 1.0,
            mean_mem: 3.0,
        };
        // Below two concurrent slots: no packing (the ranking's pick)
        assert!(packed_host(&types, 0.5, 1.0, 2.0, load(1.9)).is_none());
        // 2 slots: small holds 2 at $0.05 each, big would idle → small
        assert_eq!(packed_host(&types, 0.5, 1.0, 2.0, load(2.0)).unwrap().name, "small");
        // 8 slots: big holds 8 at $0.04 each; huge counts only 8 of its 32 → big
        assert_eq!(packed_host(&types, 0.5, 1.0, 2.0, load(8.0)).unwrap().name, "big");
        // A slot of 10 GiB only fits big or huge
        assert_eq!(packed_host(&types, 0.5, 1.0, 10.0, load(2.0)).unwrap().name, "big");
        // Load counted no higher than what runs now
        assert_eq!(load(8.0).capped(3.0).concurrent, 3.0);
    }

    #[test]
    fn the_window_measures_concurrency_over_what_it_has_seen() {
        let mut w = SlotWindow::default();
        assert!(w.load(10.0).is_none());
        w.push(0.0, 10.0, 1.0, 2.0);
        assert!(w.load(10.0).is_none(), "one slot says nothing about concurrency");
        w.push(0.0, 10.0, 3.0, 4.0);
        let l = w.load(10.0).unwrap();
        assert_eq!((l.concurrent, l.mean_cpu, l.mean_mem), (2.0, 2.0, 3.0));
        // A slot still running counts only what has elapsed
        assert_eq!(w.load(5.0).unwrap().concurrent, 2.0);
        w.push(5.0, 100.0, 1.0, 1.0);
        assert!((w.load(10.0).unwrap().concurrent - 2.5).abs() < 1e-12);
        for i in 0..SLOT_WINDOW {
            w.push(20.0 + i as f64, 21.0 + i as f64, 1.0, 1.0);
        }
        assert_eq!(w.slots.len(), SLOT_WINDOW);
    }

    #[test]
    fn shares_and_keepalive() {
        let h = shape("m", 4.0, 16.0, 0.36);
        assert_eq!(slot_share(&h, 1.0, 8.0), 0.5);
        assert!((slot_cost(&h, 0.5, 3600.0) - 0.18).abs() < 1e-12);
        assert_eq!(keepalive_s(45.0), 60.0);
        assert_eq!(keepalive_s(90.0), 90.0);
    }

    fn host(id: &str, shape: HostShape, slots: Vec<Slot>, idle_since_s: Option<f64>) -> PoolHost {
        PoolHost {
            id: id.into(),
            shape,
            slots,
            idle_since_s,
            draining: false,
        }
    }
    const POOL: PoolSettings = PoolSettings {
        max_hosts: 3,
        keepalive_s: 60.0,
        reserve_gib: 0.5,
        mode: SOFT,
    };

    #[test]
    fn the_pool_fills_its_hosts_first_then_opens_no_more_than_its_ceiling() {
        let small = shape("small", 2.0, 8.0, 0.10);
        // One host with one free core; five 1-core jobs queued
        let hosts = [host("h1", small.clone(), vec![slot(1.0, 2.0, 1.0, 2.0)], None)];
        let q = vec![want(1.0, 2.0); 5];
        let plan = plan_pool(&hosts, &q, &[], |_| Some(small.clone()), None, 0.0, &POOL);
        // job 0 on h1; jobs 1-2 and 3-4 on two new hosts (the ceiling is 3 hosts)
        assert_eq!(
            plan,
            vec![
                PoolAction::Open {
                    shape: small.clone(),
                    takes: vec![1, 2]
                },
                PoolAction::Open {
                    shape: small.clone(),
                    takes: vec![3, 4]
                },
            ]
        );
        // Seven: the seventh waits for room (no fourth host)
        let q = vec![want(1.0, 2.0); 7];
        let plan = plan_pool(&hosts, &q, &[], |_| Some(small.clone()), None, 0.0, &POOL);
        let placed: usize = plan
            .iter()
            .map(|a| match a {
                PoolAction::Open { takes, .. } => takes.len(),
                _ => 0,
            })
            .sum();
        assert_eq!((plan.len(), placed), (2, 4), "{plan:?}");
    }

    #[test]
    fn a_measured_load_opens_the_cheapest_host_per_slot_and_idle_hosts_are_retired() {
        let small = shape("small", 2.0, 8.0, 0.10);
        let big = shape("big", 8.0, 32.0, 0.32);
        let types = [small.clone(), big.clone()];
        let load = SlotLoad {
            concurrent: 8.0,
            mean_cpu: 1.0,
            mean_mem: 2.0,
        };
        let q = vec![want(1.0, 2.0); 8];
        let plan = plan_pool(&[], &q, &types, |_| Some(small.clone()), Some(load), 0.0, &POOL);
        assert_eq!(
            plan,
            vec![PoolAction::Open {
                shape: big.clone(),
                takes: (0..8).collect()
            }]
        );
        // An empty host past its keep-alive is retired; one within it, or busy, or that takes a
        // queued slot, is not
        let hosts = [
            host("old", small.clone(), vec![], Some(0.0)),
            host("fresh", small.clone(), vec![], Some(30.0)),
            host("busy", small.clone(), vec![slot(1.0, 1.0, 1.0, 1.0)], None),
        ];
        assert_eq!(
            plan_pool(&hosts, &[], &types, |_| None, None, 70.0, &POOL),
            vec![PoolAction::Retire { id: "old".into() }]
        );
        assert_eq!(
            plan_pool(&hosts, &[want(2.0, 1.0)], &types, |_| None, None, 70.0, &POOL),
            vec![],
            "old takes the job"
        );
        // A draining host takes nothing
        let draining = [PoolHost {
            draining: true,
            ..host("d", small.clone(), vec![], None)
        }];
        let plan = plan_pool(
            &draining,
            &[want(1.0, 1.0)],
            &types,
            |_| Some(small.clone()),
            None,
            0.0,
            &POOL,
        );
        assert_eq!(
            plan,
            vec![PoolAction::Open {
                shape: small,
                takes: vec![0]
            }]
        );
    }
}
