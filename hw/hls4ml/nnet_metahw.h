// metahw head kernels as hls4ml layers: support memory, prototypes, distances, arg-reductions,
// softmax, cosine attention, the Proto-MAML head initialisation, on-chip SGD steps of the head,
// and the dense layer on run-time head state.
//
// The design sees one image per call. Every head layer gets `ctrl`, the image's label input:
// a support label 0..ways-1, or -1 for a query image. An episode is its support images followed
// by its query images.
// - Per-episode layers (CONFIG_T::per_sample false) compute once, on the first query image after
//   support images, and hold their result until the next episode's first query image.
// - Per-sample layers (CONFIG_T::per_sample true) compute on every query image and output 0 on
//   support images.
// Integer semantics: docs/numerics.md §5, op by op (metahw/compiler/kernels/).
#ifndef NNET_METAHW_H_
#define NNET_METAHW_H_

#include "nnet_common.h"
#include "nnet_metahw_sfu.h"

namespace nnet {
namespace metahw {

// Whether the layer computes on this image (per-layer state: one instance per CONFIG_T).
template <class CONFIG_T, class ctrl_T> bool fires(const ctrl_T &ctrl) {
    static bool support_seen = false;
    bool query = ctrl < 0;
    if (CONFIG_T::per_sample)
        return query;
    bool now = query && support_seen;
    support_seen = !query;
    return now;
}

// Copy the held result out; per-sample layers output 0 on support images.
template <class CONFIG_T, int N, class res_T> void emit(bool fired, res_T held[N], res_T res[N]) {
    for (int i = 0; i < N; i++) {
        res[i] = (CONFIG_T::per_sample && !fired) ? res_T(0) : held[i];
    }
}

// The last n_rows values of `data` seen on support images (the episode's support set, in arrival order).
template <class CONFIG_T, class data_T, class ctrl_T, class res_T>
void support_memory(data_T data[CONFIG_T::n_in], ctrl_T ctrl[1], res_T res[CONFIG_T::n_rows * CONFIG_T::n_in]) {
    static res_T memory[CONFIG_T::n_rows * CONFIG_T::n_in];
    static int count = 0;
    if (ctrl[0] >= 0) {
        if (count == CONFIG_T::n_rows)
            count = 0;
        for (int i = 0; i < CONFIG_T::n_in; i++) {
            memory[count * CONFIG_T::n_in + i] = data[i];
        }
        count++;
    }
    for (int i = 0; i < CONFIG_T::n_rows * CONFIG_T::n_in; i++) {
        res[i] = memory[i];
    }
}

// A program weight (or a head state's episode-start value); ctrl only places it in the layer graph.
template <class CONFIG_T, class ctrl_T, class w_T, class res_T>
void constant(ctrl_T ctrl[1], w_T values[CONFIG_T::n_out], res_T res[CONFIG_T::n_out]) {
    for (int i = 0; i < CONFIG_T::n_out; i++) {
        res[i] = values[i];
    }
}

// A model output that other layers also read (so that no output port is read back).
template <class CONFIG_T, class x_T, class res_T> void output(x_T x[CONFIG_T::n_out], res_T res[CONFIG_T::n_out]) {
    for (int i = 0; i < CONFIG_T::n_out; i++) {
        res[i] = x[i];
    }
}

// GlobalAvgPool when H*W is not a power of two (an embedding layer, on every image, no ctrl):
// res[c] = requantise(factor * sum_p data[p, c]), factor = scale * 2^-shift (exact product).
template <class CONFIG_T, class data_T, class res_T>
void global_average(data_T data[CONFIG_T::n_pixels * CONFIG_T::n_chan], res_T res[CONFIG_T::n_chan]) {
    typename CONFIG_T::factor_t factor = from_raw<typename CONFIG_T::factor_t>(ap_uint<64>(CONFIG_T::factor_raw));
    for (int c = 0; c < CONFIG_T::n_chan; c++) {
        typename CONFIG_T::sum_t sum = 0;
        for (int p = 0; p < CONFIG_T::n_pixels; p++) {
            sum += data[p * CONFIG_T::n_chan + c];
        }
        res[c] = sum * factor;
    }
}

// PrototypeAccumulate: c[n,d] = requantise(factor * sum_{m: y_m = n} F[m,d]); factor = 2^-k or R * 2^-r.
template <class CONFIG_T, class feat_T, class label_T, class ctrl_T, class res_T>
void prototypes(feat_T feats[CONFIG_T::n_support * CONFIG_T::n_feat], label_T labels[CONFIG_T::n_support],
                ctrl_T ctrl[1], res_T res[CONFIG_T::n_class * CONFIG_T::n_feat]) {
    static res_T held[CONFIG_T::n_class * CONFIG_T::n_feat];
    bool fired = fires<CONFIG_T>(ctrl[0]);
    if (fired) {
        typename CONFIG_T::factor_t factor = from_raw<typename CONFIG_T::factor_t>(ap_uint<64>(CONFIG_T::factor_raw));
        for (int n = 0; n < CONFIG_T::n_class; n++) {
            for (int d = 0; d < CONFIG_T::n_feat; d++) {
                typename CONFIG_T::sum_t sum = 0;
                for (int m = 0; m < CONFIG_T::n_support; m++) {
                    if (labels[m] == n)
                        sum += feats[m * CONFIG_T::n_feat + d];
                }
                held[n * CONFIG_T::n_feat + d] = sum * factor;
            }
        }
    }
    emit<CONFIG_T, CONFIG_T::n_class * CONFIG_T::n_feat>(fired, held, res);
}

// Distance, squared L2: sum_d (q_d - r_d)^2 (exact), requantised.
template <class CONFIG_T, class q_T, class r_T, class ctrl_T, class res_T>
void distance_l2(q_T q[CONFIG_T::n_rows * CONFIG_T::n_feat], r_T refs[CONFIG_T::n_refs * CONFIG_T::n_feat],
                 ctrl_T ctrl[1], res_T res[CONFIG_T::n_rows * CONFIG_T::n_refs]) {
    static res_T held[CONFIG_T::n_rows * CONFIG_T::n_refs];
    bool fired = fires<CONFIG_T>(ctrl[0]);
    if (fired) {
        for (int i = 0; i < CONFIG_T::n_rows; i++) {
            for (int n = 0; n < CONFIG_T::n_refs; n++) {
                typename CONFIG_T::accum_t acc = 0;
                for (int d = 0; d < CONFIG_T::n_feat; d++) {
                    acc += (q[i * CONFIG_T::n_feat + d] - refs[n * CONFIG_T::n_feat + d]) *
                           (q[i * CONFIG_T::n_feat + d] - refs[n * CONFIG_T::n_feat + d]);
                }
                held[i * CONFIG_T::n_refs + n] = acc;
            }
        }
    }
    emit<CONFIG_T, CONFIG_T::n_rows * CONFIG_T::n_refs>(fired, held, res);
}

// Distance, dot product: sum_d q_d r_d (exact), requantised.
template <class CONFIG_T, class q_T, class r_T, class ctrl_T, class res_T>
void distance_dot(q_T q[CONFIG_T::n_rows * CONFIG_T::n_feat], r_T refs[CONFIG_T::n_refs * CONFIG_T::n_feat],
                  ctrl_T ctrl[1], res_T res[CONFIG_T::n_rows * CONFIG_T::n_refs]) {
    static res_T held[CONFIG_T::n_rows * CONFIG_T::n_refs];
    bool fired = fires<CONFIG_T>(ctrl[0]);
    if (fired) {
        for (int i = 0; i < CONFIG_T::n_rows; i++) {
            for (int n = 0; n < CONFIG_T::n_refs; n++) {
                typename CONFIG_T::accum_t acc = 0;
                for (int d = 0; d < CONFIG_T::n_feat; d++) {
                    acc += q[i * CONFIG_T::n_feat + d] * refs[n * CONFIG_T::n_feat + d];
                }
                held[i * CONFIG_T::n_refs + n] = acc;
            }
        }
    }
    emit<CONFIG_T, CONFIG_T::n_rows * CONFIG_T::n_refs>(fired, held, res);
}

// Distance, cosine: dot product of the unit-normalised rows (exact at frac 2U), requantised.
template <class CONFIG_T, class q_T, class r_T, class ctrl_T, class res_T>
void distance_cosine(q_T q[CONFIG_T::n_rows * CONFIG_T::n_feat], r_T refs[CONFIG_T::n_refs * CONFIG_T::n_feat],
                     ctrl_T ctrl[1], res_T res[CONFIG_T::n_rows * CONFIG_T::n_refs]) {
    static res_T held[CONFIG_T::n_rows * CONFIG_T::n_refs];
    bool fired = fires<CONFIG_T>(ctrl[0]);
    if (fired) {
        typename CONFIG_T::unit_t unit_refs[CONFIG_T::n_refs * CONFIG_T::n_feat];
        for (int n = 0; n < CONFIG_T::n_refs; n++) {
            normalize<typename CONFIG_T::r_wide_t, CONFIG_T::r_wide_frac, CONFIG_T::n_feat>(
                &refs[n * CONFIG_T::n_feat], &unit_refs[n * CONFIG_T::n_feat]);
        }
        for (int i = 0; i < CONFIG_T::n_rows; i++) {
            typename CONFIG_T::unit_t unit_q[CONFIG_T::n_feat];
            normalize<typename CONFIG_T::q_wide_t, CONFIG_T::q_wide_frac, CONFIG_T::n_feat>(&q[i * CONFIG_T::n_feat],
                                                                                           unit_q);
            for (int n = 0; n < CONFIG_T::n_refs; n++) {
                typename CONFIG_T::accum_t acc = 0;
                for (int d = 0; d < CONFIG_T::n_feat; d++) {
                    acc += unit_q[d] * unit_refs[n * CONFIG_T::n_feat + d];
                }
                held[i * CONFIG_T::n_refs + n] = acc;
            }
        }
    }
    emit<CONFIG_T, CONFIG_T::n_rows * CONFIG_T::n_refs>(fired, held, res);
}

// ArgMin over the last axis; ties go to the lowest index.
template <class CONFIG_T, class x_T, class res_T>
void argmin(x_T x[CONFIG_T::n_rows * CONFIG_T::n_in], res_T res[CONFIG_T::n_rows]) {
    for (int i = 0; i < CONFIG_T::n_rows; i++) {
        int best = 0;
        for (int n = 1; n < CONFIG_T::n_in; n++) {
            if (x[i * CONFIG_T::n_in + n] < x[i * CONFIG_T::n_in + best])
                best = n;
        }
        res[i] = best;
    }
}

// ArgMax over the last axis; ties go to the lowest index.
template <class CONFIG_T, class x_T, class res_T>
void argmax(x_T x[CONFIG_T::n_rows * CONFIG_T::n_in], res_T res[CONFIG_T::n_rows]) {
    for (int i = 0; i < CONFIG_T::n_rows; i++) {
        int best = 0;
        for (int n = 1; n < CONFIG_T::n_in; n++) {
            if (x[i * CONFIG_T::n_in + n] > x[i * CONFIG_T::n_in + best])
                best = n;
        }
        res[i] = best;
    }
}

// Softmax over the last axis (exp table, integer reciprocal).
template <class CONFIG_T, class x_T, class ctrl_T, class table_T, class res_T>
void softmax(x_T x[CONFIG_T::n_rows * CONFIG_T::n_in], ctrl_T ctrl[1], table_T table[CONFIG_T::sm_size],
             res_T res[CONFIG_T::n_rows * CONFIG_T::n_in]) {
    static res_T held[CONFIG_T::n_rows * CONFIG_T::n_in];
    bool fired = fires<CONFIG_T>(ctrl[0]);
    if (fired) {
        for (int i = 0; i < CONFIG_T::n_rows; i++) {
            softmax_row<CONFIG_T, CONFIG_T::n_in>(&x[i * CONFIG_T::n_in], table, &held[i * CONFIG_T::n_in]);
        }
    }
    emit<CONFIG_T, CONFIG_T::n_rows * CONFIG_T::n_in>(fired, held, res);
}

// CosineAttention: z = requantise(cos(q, s_m) * scale) in logits_t, a = softmax(z) in attention_t,
// p[n] = requantise(sum_{m: y_m = n} a[m]).
template <class CONFIG_T, class q_T, class s_T, class label_T, class scale_T, class ctrl_T, class table_T, class res_T>
void cosine_attention(q_T q[CONFIG_T::n_rows * CONFIG_T::n_feat], s_T supports[CONFIG_T::n_support * CONFIG_T::n_feat],
                      label_T labels[CONFIG_T::n_support], scale_T scale[1], ctrl_T ctrl[1],
                      table_T table[CONFIG_T::sm_size], res_T res[CONFIG_T::n_rows * CONFIG_T::n_class]) {
    static res_T held[CONFIG_T::n_rows * CONFIG_T::n_class];
    bool fired = fires<CONFIG_T>(ctrl[0]);
    if (fired) {
        typename CONFIG_T::unit_t unit_s[CONFIG_T::n_support * CONFIG_T::n_feat];
        for (int m = 0; m < CONFIG_T::n_support; m++) {
            normalize<typename CONFIG_T::s_wide_t, CONFIG_T::s_wide_frac, CONFIG_T::n_feat>(
                &supports[m * CONFIG_T::n_feat], &unit_s[m * CONFIG_T::n_feat]);
        }
        for (int i = 0; i < CONFIG_T::n_rows; i++) {
            typename CONFIG_T::unit_t unit_q[CONFIG_T::n_feat];
            normalize<typename CONFIG_T::q_wide_t, CONFIG_T::q_wide_frac, CONFIG_T::n_feat>(&q[i * CONFIG_T::n_feat],
                                                                                           unit_q);
            typename CONFIG_T::logits_t logits[CONFIG_T::n_support];
            for (int m = 0; m < CONFIG_T::n_support; m++) {
                typename CONFIG_T::accum_t acc = 0;
                for (int d = 0; d < CONFIG_T::n_feat; d++) {
                    acc += unit_q[d] * unit_s[m * CONFIG_T::n_feat + d];
                }
                logits[m] = acc * scale[0];
            }
            typename CONFIG_T::attention_t attention[CONFIG_T::n_support];
            softmax_row<CONFIG_T, CONFIG_T::n_support>(logits, table, attention);
            for (int n = 0; n < CONFIG_T::n_class; n++) {
                typename CONFIG_T::sum_t sum = 0;
                for (int m = 0; m < CONFIG_T::n_support; m++) {
                    if (labels[m] == n)
                        sum += attention[m];
                }
                held[i * CONFIG_T::n_class + n] = sum;
            }
        }
    }
    emit<CONFIG_T, CONFIG_T::n_rows * CONFIG_T::n_class>(fired, held, res);
}

// ProtoHeadInit, weight: W = requantise(2c).
template <class CONFIG_T, class c_T, class ctrl_T, class res_T>
void proto_head_weight(c_T protos[CONFIG_T::n_out], ctrl_T ctrl[1], res_T res[CONFIG_T::n_out]) {
    static res_T held[CONFIG_T::n_out];
    bool fired = fires<CONFIG_T>(ctrl[0]);
    if (fired) {
        for (int i = 0; i < CONFIG_T::n_out; i++) {
            held[i] = protos[i] * ap_uint<2>(2);
        }
    }
    emit<CONFIG_T, CONFIG_T::n_out>(fired, held, res);
}

// ProtoHeadInit, bias: b[n] = requantise(-sum_d c[n,d]^2) (exact sum first).
template <class CONFIG_T, class c_T, class ctrl_T, class res_T>
void proto_head_bias(c_T protos[CONFIG_T::n_class * CONFIG_T::n_feat], ctrl_T ctrl[1], res_T res[CONFIG_T::n_class]) {
    static res_T held[CONFIG_T::n_class];
    bool fired = fires<CONFIG_T>(ctrl[0]);
    if (fired) {
        for (int n = 0; n < CONFIG_T::n_class; n++) {
            typename CONFIG_T::accum_t acc = 0;
            for (int d = 0; d < CONFIG_T::n_feat; d++) {
                acc -= protos[n * CONFIG_T::n_feat + d] * protos[n * CONFIG_T::n_feat + d];
            }
            held[n] = acc;
        }
    }
    emit<CONFIG_T, CONFIG_T::n_class>(fired, held, res);
}

// Dense on run-time weights: acc = b + x W^T (exact), ReLU if CONFIG_T::relu, requantised.
template <class CONFIG_T, class x_T, class w_T, class b_T, class ctrl_T, class res_T>
void dense(x_T x[CONFIG_T::n_rows * CONFIG_T::n_in], w_T w[CONFIG_T::n_out * CONFIG_T::n_in], b_T b[CONFIG_T::n_out],
           ctrl_T ctrl[1], res_T res[CONFIG_T::n_rows * CONFIG_T::n_out]) {
    static res_T held[CONFIG_T::n_rows * CONFIG_T::n_out];
    bool fired = fires<CONFIG_T>(ctrl[0]);
    if (fired) {
        for (int i = 0; i < CONFIG_T::n_rows; i++) {
            for (int n = 0; n < CONFIG_T::n_out; n++) {
                typename CONFIG_T::accum_t acc = b[n];
                for (int d = 0; d < CONFIG_T::n_in; d++) {
                    acc += x[i * CONFIG_T::n_in + d] * w[n * CONFIG_T::n_in + d];
                }
                if (CONFIG_T::relu && acc < 0)
                    acc = 0;
                held[i * CONFIG_T::n_out + n] = acc;
            }
        }
    }
    emit<CONFIG_T, CONFIG_T::n_rows * CONFIG_T::n_out>(fired, held, res);
}

// SGDHeadStep, steps 1-4: G = requantise((softmax(F W^T + b) - onehot(y)) / M) into res_T (grad_format).
template <class CONFIG_T, class f_T, class label_T, class w_T, class b_T, class ctrl_T, class table_T, class res_T>
void sgd_grad(f_T feats[CONFIG_T::n_support * CONFIG_T::n_feat], label_T labels[CONFIG_T::n_support],
              w_T w[CONFIG_T::n_class * CONFIG_T::n_feat], b_T b[CONFIG_T::n_class], ctrl_T ctrl[1],
              table_T table[CONFIG_T::sm_size], res_T res[CONFIG_T::n_support * CONFIG_T::n_class]) {
    static res_T held[CONFIG_T::n_support * CONFIG_T::n_class];
    bool fired = fires<CONFIG_T>(ctrl[0]);
    if (fired) {
        typename CONFIG_T::factor_t factor = from_raw<typename CONFIG_T::factor_t>(ap_uint<64>(CONFIG_T::factor_raw));
        for (int m = 0; m < CONFIG_T::n_support; m++) {
            typename CONFIG_T::logits_t logits[CONFIG_T::n_class];
            for (int n = 0; n < CONFIG_T::n_class; n++) {
                typename CONFIG_T::accum_t acc = b[n];
                for (int d = 0; d < CONFIG_T::n_feat; d++) {
                    acc += feats[m * CONFIG_T::n_feat + d] * w[n * CONFIG_T::n_feat + d];
                }
                logits[n] = acc;
            }
            typename CONFIG_T::prob_t probs[CONFIG_T::n_class];
            softmax_row<CONFIG_T, CONFIG_T::n_class>(logits, table, probs);
            for (int n = 0; n < CONFIG_T::n_class; n++) {
                typename CONFIG_T::err_t error = probs[n];
                if (labels[m] == n)
                    error -= 1;
                held[m * CONFIG_T::n_class + n] = error * factor;
            }
        }
    }
    emit<CONFIG_T, CONFIG_T::n_support * CONFIG_T::n_class>(fired, held, res);
}

// SGDHeadStep, weight update: W <- requantise(W - lr_w * G^T F), the exact difference rounded once.
template <class CONFIG_T, class w_T, class g_T, class f_T, class lr_T, class ctrl_T, class res_T>
void sgd_weight_update(w_T w[CONFIG_T::n_class * CONFIG_T::n_feat], g_T grad[CONFIG_T::n_support * CONFIG_T::n_class],
                       f_T feats[CONFIG_T::n_support * CONFIG_T::n_feat], lr_T lr[CONFIG_T::n_lr], ctrl_T ctrl[1],
                       res_T res[CONFIG_T::n_class * CONFIG_T::n_feat]) {
    static res_T held[CONFIG_T::n_class * CONFIG_T::n_feat];
    bool fired = fires<CONFIG_T>(ctrl[0]);
    if (fired) {
        for (int n = 0; n < CONFIG_T::n_class; n++) {
            for (int d = 0; d < CONFIG_T::n_feat; d++) {
                typename CONFIG_T::accum_t acc = 0;
                for (int m = 0; m < CONFIG_T::n_support; m++) {
                    acc += grad[m * CONFIG_T::n_class + n] * feats[m * CONFIG_T::n_feat + d];
                }
                int i = n * CONFIG_T::n_feat + d;
                int j = CONFIG_T::n_lr == 1 ? 0 : (CONFIG_T::n_lr == CONFIG_T::n_feat ? d : i);
                held[i] = w[i] - lr[j] * acc;
            }
        }
    }
    emit<CONFIG_T, CONFIG_T::n_class * CONFIG_T::n_feat>(fired, held, res);
}

// SGDHeadStep, bias update: b <- requantise(b - lr_b * sum_m G[m,:]).
template <class CONFIG_T, class b_T, class g_T, class lr_T, class ctrl_T, class res_T>
void sgd_bias_update(b_T b[CONFIG_T::n_class], g_T grad[CONFIG_T::n_support * CONFIG_T::n_class],
                     lr_T lr[CONFIG_T::n_lr], ctrl_T ctrl[1], res_T res[CONFIG_T::n_class]) {
    static res_T held[CONFIG_T::n_class];
    bool fired = fires<CONFIG_T>(ctrl[0]);
    if (fired) {
        for (int n = 0; n < CONFIG_T::n_class; n++) {
            typename CONFIG_T::accum_t acc = 0;
            for (int m = 0; m < CONFIG_T::n_support; m++) {
                acc += grad[m * CONFIG_T::n_class + n];
            }
            held[n] = b[n] - lr[CONFIG_T::n_lr == 1 ? 0 : n] * acc;
        }
    }
    emit<CONFIG_T, CONFIG_T::n_class>(fired, held, res);
}

} // namespace metahw
} // namespace nnet

#endif
