// darknet's NMS on the GPU (API and semantics: darknet_nms_launch.h). Three kernels, no sort of the
// whole candidate set, no host synchronization:
//
//  1. scores_kernel: rows -> per (image, class) a row of scores (0 where the row or the class does
//     not pass conf_thresh), written class-major so the next kernel reads it coalesced, and every
//     row's box in darknet's relative units.
//  2. class_kernel, one block per (image, class): greedy NMS in score order. A class only needs its
//     first max_det survivors (only they can reach the image's top max_det), and greedy NMS keeps a
//     candidate exactly when no earlier survivor suppresses it. So the block takes candidates best
//     first in chunks of kChunk: a radix select over the 64-bit keys (score bits, ~row) finds the
//     chunk's last key, the chunk is gathered and sorted in shared memory; then, kThreads at a time,
//     each candidate is tested against the survivors so far, the ones left suppress among
//     themselves through a bitmask, and one warp walks the mask in order. It stops at max_det
//     survivors or when no candidate is left. Work follows the candidates taken, not all of them:
//     with random weights at conf 0.005 every (row, class) is a candidate, and a class still ends
//     after its first few chunks.
//  3. merge_kernel, one block per (image, class): a survivor's place in the image's order is its
//     index in its class plus, per other class, how many of that class's survivors come before it
//     (a binary search); the ones placed below max_det are written there. Block (image, 0) writes
//     num_dets and zeroes the rows after it.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "darknet_nms_launch.h"

namespace mish::nms {
namespace {

constexpr int kThreads = 256;  // class_kernel and merge_kernel blocks
constexpr int kWarps = kThreads / 32;
constexpr int kChunk = 1024;           // candidates selected and sorted at a time
constexpr int kWords = kThreads / 32;  // bitmask words per candidate of a kThreads tile
constexpr int kKeptCached = 320;       // survivors whose edges class_kernel keeps in shared memory
constexpr int kScoreRows = 32;         // scores_kernel: rows per block (one per lane)
constexpr int kScoreClassLanes = 8;    // and classes in flight per row (blockDim.y)
constexpr unsigned kFull = 0xffffffffu;
constexpr size_t kAlign = 256;

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(double v) { return static_cast<float>(v); }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

__device__ __forceinline__ RelBox rel(float4 b) { return {b.x, b.y, b.z, b.w}; }

// Taking order as one integer: higher key first. Candidates have scores > 0, so their keys are
// >= 2^32 and 0 can pad.
__device__ __forceinline__ uint64_t make_key(float score, int32_t row) {
  return (static_cast<uint64_t>(__float_as_uint(score)) << 32) | static_cast<uint32_t>(~row);
}
__device__ __forceinline__ float key_score(uint64_t key) { return __uint_as_float(static_cast<uint32_t>(key >> 32)); }
__device__ __forceinline__ int32_t key_row(uint64_t key) { return static_cast<int32_t>(~static_cast<uint32_t>(key)); }

// Exclusive prefix sum of v over the block; every thread calls it. `total` gets the block's sum.
__device__ int block_exclusive_scan(int v, int* warp_totals, int& total) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int x = v;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int y = __shfl_up_sync(kFull, x, o);
    if (lane >= o) x += y;
  }
  if (lane == 31) warp_totals[warp] = x;
  __syncthreads();
  int before = 0, sum = 0;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    const int t = warp_totals[w];
    before += w < warp ? t : 0;
    sum += t;
  }
  __syncthreads();  // warp_totals is free again
  total = sum;
  return before + x - v;
}

struct Layout {
  size_t scores, boxes, kept_scores, kept_rows, kept_boxes, kept_count, total;
};

Layout layout(int64_t batch, int64_t num_rows, int64_t classes, int64_t max_det) {
  Layout l{};
  size_t offset = 0;
  const auto take = [&](size_t bytes) {
    const size_t at = offset;
    offset += (bytes + kAlign - 1) / kAlign * kAlign;
    return at;
  };
  const size_t segments = static_cast<size_t>(batch) * static_cast<size_t>(classes);
  l.scores = take(segments * static_cast<size_t>(num_rows) * sizeof(float));
  l.boxes = take(static_cast<size_t>(batch) * static_cast<size_t>(num_rows) * sizeof(float4));
  l.kept_scores = take(segments * static_cast<size_t>(max_det) * sizeof(float));
  l.kept_rows = take(segments * static_cast<size_t>(max_det) * sizeof(int32_t));
  l.kept_boxes = take(segments * static_cast<size_t>(max_det) * sizeof(float4));
  l.kept_count = take(segments * sizeof(int32_t));
  l.total = offset;
  return l;
}

// 1. One block per (image, kScoreRows rows); lane x is a row, y strides over the classes. Writes
// scores[(image * classes + c) * num_rows + row] (coalesced across the lanes) and boxes[image, row].
template <typename T>
__global__ void __launch_bounds__(kScoreRows* kScoreClassLanes)
    scores_kernel(const T* __restrict__ rows, int64_t num_rows, int64_t classes, int64_t tiles, NmsParams p,
                  float* __restrict__ scores, float4* __restrict__ boxes) {
  const int64_t image = blockIdx.x / tiles;
  const int64_t row = (blockIdx.x % tiles) * kScoreRows + threadIdx.x;
  if (row >= num_rows) return;
  const T* r = rows + (image * num_rows + row) * (5 + classes);
  const float objectness = to_float(r[4]);
  const bool counts = objectness > p.conf_thresh;
  if (threadIdx.y == 0) {
    const RelBox b =
        relative_box(to_float(r[0]), to_float(r[1]), to_float(r[2]), to_float(r[3]), p.net_width, p.net_height);
    boxes[image * num_rows + row] = make_float4(b.x, b.y, b.w, b.h);
  }
  float* out = scores + image * classes * num_rows + row;
  for (int64_t c = threadIdx.y; c < classes; c += kScoreClassLanes) {
    float s = 0.0f;
    if (counts) {
      s = class_score(objectness, to_float(r[5 + c]));
      if (!(s > p.conf_thresh)) s = 0.0f;  // NaN too
    }
    out[c * num_rows] = s;
  }
}

struct ClassShared {
  uint64_t chunk[kChunk];
  uint64_t tile_key[kThreads];
  float4 tile_box[kThreads];
  uint32_t mask[kThreads][kWords];
  uint32_t hist[256];
  Edges kept_edges[kKeptCached];  // the first survivors' edges, for the IoU scan of each candidate
  int warp_totals[kWarps];
  int taken_index[kThreads];
  int count, bin, above, bin_count, taken;
};

// Bitonic sort of s.chunk[0, size) into descending order; size a power of two <= kChunk.
__device__ void sort_chunk_descending(uint64_t* keys, int size) {
  for (int k = 2; k <= size; k <<= 1) {
    for (int j = k >> 1; j > 0; j >>= 1) {
      for (int i = threadIdx.x; i < size; i += kThreads) {
        const int partner = i ^ j;
        if (partner > i) {
          const uint64_t a = keys[i], b = keys[partner];
          const bool descending = (i & k) == 0;
          if (descending ? a < b : a > b) {
            keys[i] = b;
            keys[partner] = a;
          }
        }
      }
      __syncthreads();
    }
  }
}

// The first survivor k in [from, kept) whose IoU with `e` exceeds `thresh` (its IoU in `overlap`), or
// kept. Every candidate still alive scans the survivors up to its first suppressor, and nearly all
// pairs fail, so this loop is the class kernel's hot path: IoU only, no call in it, four survivors
// per step so their loads overlap.
__device__ __forceinline__ int next_overlap(const Edges* cached, const float4* survivors, int from, int kept,
                                            const Edges& e, float thresh, float& overlap) {
  int k = from;
  const int cached_end = min(kept, kKeptCached);
  for (; k + 4 <= cached_end; k += 4) {
    float v[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) v[j] = iou(cached[k + j], e);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      if (v[j] > thresh) {
        overlap = v[j];
        return k + j;
      }
    }
  }
  for (; k < kept; ++k) {
    const float v = iou(k < kKeptCached ? cached[k] : edges(rel(survivors[k])), e);
    if (v > thresh) {
      overlap = v;
      return k;
    }
  }
  return kept;
}

// 2. One block per (image, class).
__global__ void __launch_bounds__(kThreads)
    class_kernel(int64_t num_rows, int64_t classes, NmsParams p, const float* __restrict__ scores,
                 const float4* __restrict__ boxes, float* __restrict__ kept_scores, int32_t* __restrict__ kept_rows,
                 float4* __restrict__ kept_boxes, int32_t* __restrict__ kept_count) {
  __shared__ ClassShared s;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int64_t segment = blockIdx.x;
  const int64_t image = segment / classes;
  const float* sc = scores + segment * num_rows;
  const float4* bx = boxes + image * num_rows;
  float* out_scores = kept_scores + segment * p.max_det;
  int32_t* out_rows = kept_rows + segment * p.max_det;
  float4* out_boxes = kept_boxes + segment * p.max_det;
  const double exponent = diou_exponent(p.kind, p.beta);
  const int rows = static_cast<int>(num_rows);

  // The key of row r when it is still to be taken (a candidate below `bound`), else 0.
  uint64_t bound = ~uint64_t{0};
  const auto remaining_key = [&](int r) -> uint64_t {
    const float v = __ldg(sc + r);
    if (!(v > 0.0f)) return 0;
    const uint64_t key = make_key(v, r);
    return key < bound ? key : 0;
  };

  int kept = 0;
  while (kept < p.max_det) {
    // Select the next chunk: the kChunk highest remaining keys (all of them when fewer remain).
    // Radix select on 8-bit digits from the top; `first` is the lowest key taken.
    uint64_t prefix = 0, prefix_mask = 0, first = 0;
    int need = kChunk;
    bool none_left = false;
    for (int shift = 56;; shift -= 8) {
      s.hist[tid] = 0;
      __syncthreads();
      // Lanes with the same digit add once: scores share their top digits, and one shared-memory
      // address hit by a whole warp would serialize 32 atomics.
      for (int base = 0; base < rows; base += kThreads) {
        const int r = base + tid;
        const uint64_t key = r < rows ? remaining_key(r) : 0;
        const bool counts = key != 0 && (key & prefix_mask) == prefix;
        const unsigned digit = counts ? static_cast<unsigned>(key >> shift) & 0xffu : 0x100u;
        const unsigned peers = __match_any_sync(kFull, digit);
        if (counts && lane == __ffs(peers) - 1) atomicAdd(&s.hist[digit], static_cast<unsigned>(__popc(peers)));
      }
      __syncthreads();
      const int count = static_cast<int>(s.hist[255 - tid]);  // thread t: the t-th highest digit
      int total;
      const int above = block_exclusive_scan(count, s.warp_totals, total);
      if (shift == 56 && total <= kChunk) {  // the whole remainder fits (uniform: total is the block's)
        none_left = total == 0;
        first = 1;
        break;
      }
      if (above < need && need <= above + count) {
        s.bin = 255 - tid;
        s.above = above;
        s.bin_count = count;
      }
      __syncthreads();
      need -= s.above;
      prefix |= static_cast<uint64_t>(s.bin) << shift;
      prefix_mask |= uint64_t{0xff} << shift;
      // Keys are unique, so the last digit's bin holds exactly one; a bin taken whole ends earlier.
      if (s.bin_count == need || shift == 0) {
        first = prefix;
        break;
      }
    }
    if (none_left) break;

    // Gather the chunk (any order: it is sorted next), pad to a power of two with 0 keys.
    if (tid == 0) s.count = 0;
    __syncthreads();
    for (int base = 0; base < rows; base += kThreads) {
      const int r = base + tid;
      const uint64_t key = r < rows ? remaining_key(r) : 0;
      const bool take = key != 0 && key >= first;
      const unsigned ballot = __ballot_sync(kFull, take);
      if (ballot == 0) continue;
      int at = 0;
      if (lane == __ffs(ballot) - 1) at = atomicAdd(&s.count, __popc(ballot));
      at = __shfl_sync(kFull, at, __ffs(ballot) - 1);
      if (take) s.chunk[at + __popc(ballot & ((1u << lane) - 1))] = key;
    }
    __syncthreads();
    const int m = s.count;
    int size = 1;
    while (size < m) size <<= 1;
    for (int i = m + tid; i < size; i += kThreads) s.chunk[i] = 0;
    __syncthreads();
    sort_chunk_descending(s.chunk, size);
    bound = s.chunk[m - 1];

    // The chunk in order, kThreads candidates at a time.
    for (int base = 0; base < m && kept < p.max_det; base += kThreads) {
      const int i = base + tid;
      bool alive = i < m;
      uint64_t key = 0;
      float4 box = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      if (alive) {
        key = s.chunk[i];
        box = __ldg(bx + key_row(key));
        const Edges e = edges(rel(box));
        float v = 0.0f;
        for (int k = next_overlap(s.kept_edges, out_boxes, 0, kept, e, p.iou_thresh, v); k < kept;
             k = next_overlap(s.kept_edges, out_boxes, k + 1, kept, e, p.iou_thresh, v)) {
          if (p.kind == NmsKind::kDefault || diou_exceeds(rel(out_boxes[k]), rel(box), v, p.iou_thresh, exponent)) {
            alive = false;
            break;
          }
        }
      }
      int n_alive;
      const int at = block_exclusive_scan(alive ? 1 : 0, s.warp_totals, n_alive);
      if (alive) {
        s.tile_key[at] = key;
        s.tile_box[at] = box;
      }
      __syncthreads();
      if (n_alive == 0) continue;  // uniform

      // mask[a][w] bit b: tile candidate a suppresses candidate 32w + b (> a).
      const int words = (n_alive + 31) / 32;
      for (int task = tid; task < n_alive * words; task += kThreads) {
        const int a = task / words, w = task % words;
        const int lo = max(a + 1, w * 32), hi = min(n_alive, w * 32 + 32);
        // IoU first for every pair, the DIoU term only on the pairs it sets (see diou_exceeds)
        const RelBox ba = rel(s.tile_box[a]);
        const Edges ea = edges(ba);
        uint32_t bits = 0;
        for (int j = lo; j < hi; ++j) {
          if (iou(ea, edges(rel(s.tile_box[j]))) > p.iou_thresh) bits |= 1u << (j - w * 32);
        }
        if (p.kind != NmsKind::kDefault) {
          for (uint32_t rest = bits; rest != 0; rest &= rest - 1) {
            const int bit = __ffs(rest) - 1;
            const RelBox bj = rel(s.tile_box[w * 32 + bit]);
            if (!diou_exceeds(ba, bj, iou(ea, edges(bj)), p.iou_thresh, exponent)) bits &= ~(1u << bit);
          }
        }
        s.mask[a][w] = bits;
      }
      __syncthreads();

      // One warp walks the mask: the lowest candidate neither taken nor suppressed is the next survivor.
      if (warp == 0) {
        const int first_bit = lane * 32;
        uint32_t open = 0;
        if (lane < words) open = n_alive - first_bit >= 32 ? kFull : (1u << (n_alive - first_bit)) - 1;
        int taken = 0;
        while (kept + taken < p.max_det) {
          const unsigned lanes = __ballot_sync(kFull, open != 0);
          if (lanes == 0) break;
          const int owner = __ffs(lanes) - 1;
          const uint32_t word = __shfl_sync(kFull, open, owner);
          const int a = owner * 32 + __ffs(word) - 1;
          if (lane == 0) s.taken_index[taken] = a;
          ++taken;
          if (lane < words) open &= ~s.mask[a][lane];
          if (lane == owner) open &= ~(1u << (a - first_bit));
        }
        if (lane == 0) s.taken = taken;
      }
      __syncthreads();
      const int taken = s.taken;
      if (tid < taken) {
        const int a = s.taken_index[tid];
        const uint64_t k = s.tile_key[a];
        out_scores[kept + tid] = key_score(k);
        out_rows[kept + tid] = key_row(k);
        out_boxes[kept + tid] = s.tile_box[a];
        if (kept + tid < kKeptCached) s.kept_edges[kept + tid] = edges(rel(s.tile_box[a]));
      }
      kept += taken;
      __syncthreads();  // the new survivors (and their cached edges) are visible to the next tile's tests
    }
    if (m < kChunk) break;  // that was the remainder
  }
  if (tid == 0) kept_count[segment] = kept;
}

// 3. One block per (image, class).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    merge_kernel(const T* __restrict__ rows, int64_t num_rows, int64_t classes, int32_t max_det,
                 const float* __restrict__ kept_scores, const int32_t* __restrict__ kept_rows,
                 const int32_t* __restrict__ kept_count, int32_t* __restrict__ num_dets, float* __restrict__ det_boxes,
                 float* __restrict__ det_scores, int32_t* __restrict__ det_classes) {
  __shared__ int warp_totals[kWarps];
  const int64_t segment = blockIdx.x;
  const int64_t image = segment / classes;
  const int32_t cls = static_cast<int32_t>(segment % classes);
  const int64_t first_segment = image * classes;
  float* boxes_out = det_boxes + image * max_det * 4;
  float* scores_out = det_scores + image * max_det;
  int32_t* classes_out = det_classes + image * max_det;

  if (cls == 0) {  // block-uniform
    int part = 0;
    for (int64_t c = threadIdx.x; c < classes; c += kThreads) part += kept_count[first_segment + c];
    int total;
    block_exclusive_scan(part, warp_totals, total);
    const int written = total < max_det ? total : max_det;
    if (threadIdx.x == 0) num_dets[image] = written;
    for (int i = written + threadIdx.x; i < max_det; i += kThreads) {
      reinterpret_cast<float4*>(boxes_out)[i] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      scores_out[i] = 0.0f;
      classes_out[i] = 0;
    }
  }

  const int count = kept_count[segment];
  const float* my_scores = kept_scores + segment * max_det;
  const int32_t* my_rows = kept_rows + segment * max_det;
  for (int i = threadIdx.x; i < count; i += kThreads) {
    const float score = my_scores[i];
    const int32_t row = my_rows[i];
    int place = i;
    for (int64_t c = 0; c < classes && place < max_det; ++c) {
      if (c == cls) continue;
      const int64_t other = first_segment + c;
      const float* os = kept_scores + other * max_det;
      const int32_t* orow = kept_rows + other * max_det;
      int lo = 0, hi = kept_count[other];
      while (lo < hi) {
        const int mid = (lo + hi) >> 1;
        if (before(os[mid], orow[mid], static_cast<int32_t>(c), score, row, cls)) {
          lo = mid + 1;
        } else {
          hi = mid;
        }
      }
      place += lo;
    }
    if (place >= max_det) continue;
    const T* r = rows + (image * num_rows + row) * (5 + classes);
    const float cx = to_float(r[0]), cy = to_float(r[1]);
    const float hw = mul_rn(to_float(r[2]), 0.5f), hh = mul_rn(to_float(r[3]), 0.5f);
    reinterpret_cast<float4*>(boxes_out)[place] =
        make_float4(sub_rn(cx, hw), sub_rn(cy, hh), add_rn(cx, hw), add_rn(cy, hh));
    scores_out[place] = score;
    classes_out[place] = cls;
  }
}

template <typename T>
cudaError_t launch(const void* rows_raw, int64_t batch, int64_t num_rows, int64_t classes, const NmsParams& p,
                   int32_t* num_dets, float* det_boxes, float* det_scores, int32_t* det_classes, char* ws,
                   const Layout& l, cudaStream_t stream) {
  const T* rows = static_cast<const T*>(rows_raw);
  float* scores = reinterpret_cast<float*>(ws + l.scores);
  float4* boxes = reinterpret_cast<float4*>(ws + l.boxes);
  float* kept_scores = reinterpret_cast<float*>(ws + l.kept_scores);
  int32_t* kept_rows = reinterpret_cast<int32_t*>(ws + l.kept_rows);
  float4* kept_boxes = reinterpret_cast<float4*>(ws + l.kept_boxes);
  int32_t* kept_count = reinterpret_cast<int32_t*>(ws + l.kept_count);
  const int64_t segments = batch * classes;
  if (num_rows > 0) {
    const int64_t tiles = (num_rows + kScoreRows - 1) / kScoreRows;
    scores_kernel<T><<<static_cast<unsigned>(batch * tiles), dim3(kScoreRows, kScoreClassLanes), 0, stream>>>(
        rows, num_rows, classes, tiles, p, scores, boxes);
  }
  class_kernel<<<static_cast<unsigned>(segments), kThreads, 0, stream>>>(
      num_rows, classes, p, scores, boxes, kept_scores, kept_rows, kept_boxes, kept_count);
  merge_kernel<T><<<static_cast<unsigned>(segments), kThreads, 0, stream>>>(
      rows, num_rows, classes, p.max_det, kept_scores, kept_rows, kept_count, num_dets, det_boxes, det_scores,
      det_classes);
  return cudaGetLastError();
}

bool valid_sizes(int64_t batch, int64_t num_rows, int64_t classes, int64_t max_det) {
  constexpr int64_t kMax = int64_t{1} << 31;
  // num_rows: class_kernel indexes rows with int, rounded up to whole blocks
  return batch >= 0 && num_rows >= 0 && classes >= 1 && max_det >= 1 && max_det < kMax && num_rows < kMax - kThreads &&
         batch * classes < kMax && batch * ((num_rows + kScoreRows - 1) / kScoreRows) < kMax;
}

}  // namespace

size_t darknet_nms_workspace_size(int64_t batch, int64_t num_rows, int64_t classes, int64_t max_det) {
  if (!valid_sizes(batch, num_rows, classes, max_det)) return 0;
  return layout(batch, num_rows, classes, max_det).total + kAlign;  // kAlign: room to align the base
}

cudaError_t launch_darknet_nms(DType dtype, const void* rows, int64_t batch, int64_t num_rows, int64_t classes,
                               const NmsParams& params, int32_t* num_dets, float* det_boxes, float* det_scores,
                               int32_t* det_classes, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  if (!valid_sizes(batch, num_rows, classes, params.max_det)) return cudaErrorInvalidValue;
  if (!(params.net_width > 0.0f) || !(params.net_height > 0.0f)) return cudaErrorInvalidValue;
  if (reinterpret_cast<uintptr_t>(det_boxes) % alignof(float4) != 0) return cudaErrorInvalidValue;
  if (workspace_bytes < darknet_nms_workspace_size(batch, num_rows, classes, params.max_det)) {
    return cudaErrorInvalidValue;
  }
  if (batch == 0) return cudaSuccess;
  const uintptr_t base = reinterpret_cast<uintptr_t>(workspace);
  char* ws = reinterpret_cast<char*>((base + kAlign - 1) / kAlign * kAlign);
  const Layout l = layout(batch, num_rows, classes, params.max_det);
  switch (dtype) {
    case DType::kFloat32:
      return launch<float>(rows, batch, num_rows, classes, params, num_dets, det_boxes, det_scores, det_classes, ws, l,
                           stream);
    case DType::kFloat64:
      return launch<double>(rows, batch, num_rows, classes, params, num_dets, det_boxes, det_scores, det_classes, ws, l,
                            stream);
    case DType::kFloat16:
      return launch<__half>(rows, batch, num_rows, classes, params, num_dets, det_boxes, det_scores, det_classes, ws, l,
                            stream);
    case DType::kBFloat16:
      return launch<__nv_bfloat16>(rows, batch, num_rows, classes, params, num_dets, det_boxes, det_scores, det_classes,
                                   ws, l, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace mish::nms
