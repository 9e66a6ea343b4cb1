"""Helpers for 'Deep Learning Performance Optimization: From Theory to Practice'.

One concern per module; learners are welcome to read them:
- hardware: device choice and the hardware report
- precision / gpu: autocast and GradScaler the current way; GPU-only copies, TF32, CUDA graphs
- measure: latency (torch.utils.benchmark), per-call percentiles, throughput, comparison tables, per-layer times
- claims: speed-ups with a 95% interval over paired rounds, and the verdict on a claimed threshold
- memory: peak memory of a block of work
- cost: parameters, FLOPs, serialized size
- phases: time the phases of a training step
- data / models / training: the digits data, small models, plain loops
- images / loading: the digits as JPEG files on disk, Datasets, DataLoader measurements
- ledger: the course's results ledger (measured results and claims)
- threads: spinning processes that keep cores busy, for oversubscription experiments
- layers / pruning / zoo: depthwise separable conv, channel pruning, torchvision architectures
- plots / widgets / checks / source: charts, live controls, exercise checks, showing helper code
"""

from .chapter import setup_chapter
from .claims import Claim, Ratio, claims_table, make_claim, paired_ratio, report_claim, timing_ratio
from .checks import check_function, check_number
from .cost import count_flops, count_parameters, model_cost, serialized_size_bytes
from .data import DigitsSplit, PerSampleDigits, load_digits_split, tensor_loader, upsample
from .gpu import compare_host_to_device, compare_tf32_matmul, cuda_graph_replay, launch_versus_completion_ms
from .hardware import HardwareReport, hardware_report, pick_device
from .images import DecodedCache, ObjectListCache, cache_root, decode_all, image_folder, write_digit_images
from .layers import DepthwiseSeparableConv, same_padding, separable_cost_ratio
from .ledger import ledger_path, ledger_table, load_claims, load_ledger, make_entry, record_chapter
from .measure import (
    Percentiles, Timing, compare_variants, latency_percentiles, measure_interleaved, measure_latency,
    measure_percentiles, synchronize, synchronized_clock, throughput, time_layers, timing_table,
)
from .loading import (
    LoaderTiming, child_pids, loader_ratio, loader_table, make_loader, measure_loader, measure_loaders,
    new_child_processes, normalize_batch,
    training_throughput, worker_private_memory_bytes,
)
from .memory import track_peak_memory
from .models import small_cnn
from .precision import (
    PRECISIONS, amp_train_step, check_precision, explain_precision, make_grad_scaler, precision_mode, precision_point,
    precision_sweep, precision_workload, saved_activation_bytes,
)
from .phases import PhaseTimes, compare_step_phases, time_step_phases
from .plots import pareto_front, plot_breakdown, plot_comparison, plot_roofline, plot_sweep, plot_tradeoff
from .pruning import l1_filter_ranking, prune_channels
from .source import show_source
from .training import evaluate_accuracy, train_epochs
from .widgets import live_control
from .zoo import ARCHITECTURES, build_architecture, published_top1
