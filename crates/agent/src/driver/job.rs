//! Windows only: a task's limits as a Job Object, through the safe `win32job` crate
//! (`unsafe_code` is forbidden in this workspace). The arithmetic is
//! [`crate::windows::job_limits`], tested on every platform; this is the thin part that
//! calls Windows.
//!
//! `win32job` exposes the working-set limit and the processor affinity, not the CPU rate
//! cap (`JobObjectCpuRateControlInformation`) nor the commit limit: the cpu request is
//! enforced as an affinity to `ceil(cpu)` processors, memory as a maximum working set
//! (the job pages out rather than failing allocations). The message says so.

use api::kinds::Task;

use crate::windows::job_limits;

/// Puts `child` in a new Job Object with the task's limits; says what was enforced.
pub fn limit(child: Option<&tokio::process::Child>, task: &Task) -> String {
    let machine = std::thread::available_parallelism().map_or(1, |n| n.get());
    let limits = job_limits(
        task.resources.cpu.millis(),
        task.resources.memory.bytes(),
        u32::try_from(machine).unwrap_or(u32::MAX),
    );
    let Some(handle) = child.and_then(tokio::process::Child::raw_handle) else {
        return "no limits enforced (the process exited at once)".to_owned();
    };
    let mut info = win32job::ExtendedLimitInfo::new();
    let mut done = Vec::new();
    if let Some(max) = limits.working_set {
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        info.limit_working_memory(max.min(1024 * 1024), max);
        done.push(format!("memory {max} bytes (maximum working set)"));
    }
    if let Some(mask) = limits.affinity {
        info.limit_affinity(usize::try_from(mask).unwrap_or(usize::MAX));
        done.push(format!(
            "cpu {} processors (affinity; the {}% rate cap is not enforced)",
            mask.count_ones(),
            f64::from(limits.cpu_rate.unwrap_or(10_000)) / 100.0
        ));
    }
    if done.is_empty() {
        return "no limits enforced".to_owned();
    }
    let applied = win32job::Job::create_with_limit_info(&info)
        .and_then(|job| job.assign_process(handle as isize));
    match applied {
        // The job lives on while the task's processes are in it.
        Ok(()) => format!("limits enforced with a Job Object: {}", done.join(", ")),
        Err(e) => format!("no limits enforced (Job Object: {e})"),
    }
}
