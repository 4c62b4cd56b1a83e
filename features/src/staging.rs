//! Frames to the GPU through pinned host buffers and asynchronous copies on a second CUDA
//! stream, so the copy of one batch overlaps the network running on the previous one.
//!
//! tch exposes no CUDA streams, so this calls the CUDA runtime (libcudart, already loaded by
//! libtorch) directly: `cudaHostAlloc` for page-locked staging buffers, a non-blocking stream
//! for `cudaMemcpyAsync` into device buffers that torch allocated, and events to order the two
//! streams:
//! * the compute stream (torch's default stream) waits for a slot's copy before reading it;
//! * the copy stream waits until the compute stream has consumed a slot before refilling it;
//! * the host waits for a slot's previous copy before overwriting its pinned buffer.
//!
//! The features come back the same way: right after a batch's network is queued, an
//! asynchronous copy into a pinned output buffer is queued behind it on the compute stream,
//! with an event; [`crate::Model::finish`] waits for that event only. (A plain `.to(cpu)` in
//! `finish` would be queued behind the *next* batch's network too, and the host would wait for
//! both: no overlap at all.)
//!
//! Two slots: with one batch in flight ([`crate::Model::submit`] before
//! [`crate::Model::finish`] of the previous one) the host fills one while the GPU copies or
//! computes the other.
use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::OnceLock;

use tch::{Device, Kind, Tensor};

type Stream = *mut c_void;
type Event = *mut c_void;
/// The legacy default stream, torch's default compute stream.
const DEFAULT_STREAM: Stream = std::ptr::null_mut();
const HOST_TO_DEVICE: i32 = 1;
const DEVICE_TO_HOST: i32 = 2;
const STREAM_NON_BLOCKING: u32 = 1;
const EVENT_DISABLE_TIMING: u32 = 2;
const HOST_ALLOC_DEFAULT: u32 = 0;

struct Api {
    host_alloc: unsafe extern "C" fn(*mut *mut c_void, usize, u32) -> i32,
    free_host: unsafe extern "C" fn(*mut c_void) -> i32,
    set_device: unsafe extern "C" fn(i32) -> i32,
    stream_create: unsafe extern "C" fn(*mut Stream, u32) -> i32,
    stream_destroy: unsafe extern "C" fn(Stream) -> i32,
    stream_wait_event: unsafe extern "C" fn(Stream, Event, u32) -> i32,
    memcpy_async: unsafe extern "C" fn(*mut c_void, *const c_void, usize, i32, Stream) -> i32,
    event_create: unsafe extern "C" fn(*mut Event, u32) -> i32,
    event_destroy: unsafe extern "C" fn(Event) -> i32,
    event_record: unsafe extern "C" fn(Event, Stream) -> i32,
    event_sync: unsafe extern "C" fn(Event) -> i32,
    error_string: unsafe extern "C" fn(i32) -> *const c_char,
}

fn api() -> Result<&'static Api, String> {
    static API: OnceLock<Result<Api, String>> = OnceLock::new();
    API.get_or_init(|| unsafe {
        // The runtime libtorch_cuda already loaded (NOLOAD: never a second copy).
        let mut h = std::ptr::null_mut();
        for name in ["libcudart.so.13", "libcudart.so.12", "libcudart.so"] {
            let c = CString::new(name).unwrap();
            h = libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD);
            if !h.is_null() {
                break;
            }
        }
        if h.is_null() {
            return Err("libcudart is not loaded".into());
        }
        // Each field's type is the function's C signature; a symbol is one pointer wide.
        macro_rules! sym {
            ($name:literal) => {{
                let c = CString::new($name).unwrap();
                let p = libc::dlsym(h, c.as_ptr());
                if p.is_null() {
                    return Err(format!("libcudart has no {}", $name));
                }
                std::mem::transmute_copy(&p)
            }};
        }
        Ok(Api {
            host_alloc: sym!("cudaHostAlloc"),
            free_host: sym!("cudaFreeHost"),
            set_device: sym!("cudaSetDevice"),
            stream_create: sym!("cudaStreamCreateWithFlags"),
            stream_destroy: sym!("cudaStreamDestroy"),
            stream_wait_event: sym!("cudaStreamWaitEvent"),
            memcpy_async: sym!("cudaMemcpyAsync"),
            event_create: sym!("cudaEventCreateWithFlags"),
            event_destroy: sym!("cudaEventDestroy"),
            event_record: sym!("cudaEventRecord"),
            event_sync: sym!("cudaEventSynchronize"),
            error_string: sym!("cudaGetErrorString"),
        })
    })
    .as_ref()
    .map_err(Clone::clone)
}

fn check(api: &Api, what: &str, code: i32) -> Result<(), String> {
    if code == 0 {
        return Ok(());
    }
    let msg = unsafe { CStr::from_ptr((api.error_string)(code)) }.to_string_lossy().into_owned();
    Err(format!("{what}: CUDA error {code} ({msg})"))
}

struct Slot {
    host: *mut u8,
    cap: usize,
    device: Option<Tensor>,
    /// Pinned buffer the features are copied back into, its size in floats, and whether a
    /// batch's features are waiting in it (set by `download`, cleared by `wait`).
    out: *mut f32,
    out_cap: usize,
    out_busy: bool,
    /// Counts the slot's uses: a batch whose slot was reused (more than two in flight, or
    /// an abandoned one) cannot be finished by mistake.
    generation: u64,
    /// Recorded on the compute stream after the features' copy back.
    downloaded: Event,
    /// Recorded on the copy stream after the upload: the pinned buffer is free, the device
    /// buffer is filled.
    copied: Event,
    /// Recorded on the compute stream after the device buffer's last reader.
    consumed: Event,
}

pub struct Staging {
    api: &'static Api,
    device: Device,
    index: i32,
    stream: Stream,
    slots: [Slot; 2],
    next: usize,
}

// The raw pointers are CUDA handles and a pinned buffer owned by this struct alone; the model
// serialises access through a Mutex.
unsafe impl Send for Staging {}

impl Staging {
    pub fn new(device: Device) -> Result<Staging, String> {
        let Device::Cuda(index) = device else { return Err("staging is for CUDA devices".into()) };
        let api = api()?;
        let index = index as i32;
        unsafe {
            check(api, "cudaSetDevice", (api.set_device)(index))?;
            let mut stream = std::ptr::null_mut();
            check(api, "cudaStreamCreateWithFlags", (api.stream_create)(&mut stream, STREAM_NON_BLOCKING))?;
            let slot = || -> Result<Slot, String> {
                let (mut copied, mut consumed, mut downloaded) = (std::ptr::null_mut(), std::ptr::null_mut(), std::ptr::null_mut());
                for e in [&mut copied, &mut consumed, &mut downloaded] {
                    check(api, "cudaEventCreateWithFlags", (api.event_create)(e, EVENT_DISABLE_TIMING))?;
                }
                Ok(Slot { host: std::ptr::null_mut(), cap: 0, device: None, out: std::ptr::null_mut(), out_cap: 0, out_busy: false, generation: 0, downloaded, copied, consumed })
            };
            let slots = [slot()?, slot()?];
            Ok(Staging { api, device, index, stream, slots, next: 0 })
        }
    }

    /// Starts the upload of `bytes` into the next slot and gives `then` a uint8 CUDA tensor of
    /// them, which work `then` queues on torch's default stream may read; the slot is marked
    /// consumed after it. Returns the slot, its generation and what `then` returned.
    pub fn upload<T>(&mut self, bytes: &[u8], shape: &[i64], then: impl FnOnce(&Tensor) -> T) -> Result<((usize, u64), T), String> {
        let api = self.api;
        let i = self.next;
        self.next ^= 1;
        let (device, index, stream) = (self.device, self.index, self.stream);
        let s = &mut self.slots[i];
        s.generation += 1;
        s.out_busy = false;
        unsafe {
            check(api, "cudaSetDevice", (api.set_device)(index))?;
            // The pinned buffer's last upload must be done before it is overwritten.
            check(api, "cudaEventSynchronize", (api.event_sync)(s.copied))?;
            if s.cap < bytes.len() {
                // The device buffer may still be read by queued work: wait for it too.
                check(api, "cudaEventSynchronize", (api.event_sync)(s.consumed))?;
                if !s.host.is_null() {
                    check(api, "cudaFreeHost", (api.free_host)(s.host as *mut c_void))?;
                    s.host = std::ptr::null_mut();
                    s.cap = 0;
                }
                let mut p = std::ptr::null_mut();
                check(api, "cudaHostAlloc", (api.host_alloc)(&mut p, bytes.len(), HOST_ALLOC_DEFAULT))?;
                s.host = p as *mut u8;
                s.cap = bytes.len();
                s.device = Some(Tensor::empty([bytes.len() as i64], (Kind::Uint8, device)));
            }
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), s.host, bytes.len());
            let dev = s.device.as_ref().unwrap();
            // Refill the device buffer only once the compute stream is done reading it.
            check(api, "cudaStreamWaitEvent", (api.stream_wait_event)(stream, s.consumed, 0))?;
            check(api, "cudaMemcpyAsync", (api.memcpy_async)(dev.data_ptr(), s.host as *const c_void, bytes.len(), HOST_TO_DEVICE, stream))?;
            check(api, "cudaEventRecord", (api.event_record)(s.copied, stream))?;
            // The compute stream reads the buffer only after the copy.
            check(api, "cudaStreamWaitEvent", (api.stream_wait_event)(DEFAULT_STREAM, s.copied, 0))?;
            let view = dev.narrow(0, 0, bytes.len() as i64).view(shape);
            let out = then(&view);
            check(api, "cudaEventRecord", (api.event_record)(s.consumed, DEFAULT_STREAM))?;
            Ok(((i, s.generation), out))
        }
    }

    /// Queues the copy of `features` (a contiguous float32 CUDA tensor, kept alive by the
    /// caller until `wait`) into slot `i`'s pinned output buffer, behind the work that makes it.
    pub fn download(&mut self, i: usize, features: &Tensor) -> Result<(), String> {
        let api = self.api;
        let n = features.numel();
        let s = &mut self.slots[i];
        unsafe {
            check(api, "cudaSetDevice", (api.set_device)(self.index))?;
            if s.out_cap < n {
                if !s.out.is_null() {
                    check(api, "cudaFreeHost", (api.free_host)(s.out as *mut c_void))?;
                    s.out = std::ptr::null_mut();
                    s.out_cap = 0;
                }
                let mut p = std::ptr::null_mut();
                check(api, "cudaHostAlloc", (api.host_alloc)(&mut p, n * 4, HOST_ALLOC_DEFAULT))?;
                s.out = p as *mut f32;
                s.out_cap = n;
            }
            check(api, "cudaMemcpyAsync", (api.memcpy_async)(s.out as *mut c_void, features.data_ptr(), n * 4, DEVICE_TO_HOST, DEFAULT_STREAM))?;
            check(api, "cudaEventRecord", (api.event_record)(s.downloaded, DEFAULT_STREAM))?;
            s.out_busy = true;
        }
        Ok(())
    }

    /// Waits for the features of slot `i`'s use `generation` and returns the first `n` floats.
    pub fn wait(&mut self, (i, generation): (usize, u64), n: usize) -> Result<Vec<f32>, String> {
        let api = self.api;
        let s = &mut self.slots[i];
        if s.generation != generation || !s.out_busy || n > s.out_cap {
            return Err("this batch's staging slot was reused (more than two batches in flight)".into());
        }
        unsafe {
            check(api, "cudaEventSynchronize", (api.event_sync)(s.downloaded))?;
            s.out_busy = false;
            Ok(std::slice::from_raw_parts(s.out, n).to_vec())
        }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let api = self.api;
        unsafe {
            (api.set_device)(self.index);
            for s in &mut self.slots {
                for e in [s.copied, s.consumed, s.downloaded] {
                    (api.event_sync)(e);
                }
                for p in [s.host as *mut c_void, s.out as *mut c_void] {
                    if !p.is_null() {
                        (api.free_host)(p);
                    }
                }
                for e in [s.copied, s.consumed, s.downloaded] {
                    (api.event_destroy)(e);
                }
                s.device = None;
            }
            (api.stream_destroy)(self.stream);
        }
    }
}
