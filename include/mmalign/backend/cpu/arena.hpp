// mmalign/backend/cpu/arena.hpp — scratch memory for the intermediate tensors of one call.
//
// Modules take temporaries (attention scores in inference, gradient buffers in backward) from the
// backend's arena inside a Scope; the Scope returns them on exit. Blocks are kept, so once a
// model has run one step, later steps of the same sizes allocate nothing.
#pragma once

#include <algorithm>
#include <memory>
#include <new>
#include <vector>

#include "mmalign/core/tensor.hpp"

namespace mmalign::cpu {

template <class T>
class ScratchArena {
public:
    class Scope {
    public:
        explicit Scope(ScratchArena& a) : arena_(a), block_(a.block_), used_(a.used_) {}
        Scope(const Scope&) = delete;
        Scope& operator=(const Scope&) = delete;
        ~Scope() {
            arena_.block_ = block_;
            arena_.used_ = used_;
        }
        /// An uninitialised tensor of shape s, valid until this Scope ends.
        TensorView<T> tensor(Shape s) { return {arena_.allocate(s.numel()), s}; }
        TensorView<T> zeros(Shape s) {
            auto v = tensor(s);
            std::fill(v.begin(), v.end(), T(0));
            return v;
        }

    private:
        ScratchArena& arena_;
        std::size_t block_;
        index_t used_;
    };

    /// Bytes held by the arena (for tests and memory reports).
    std::size_t capacity_bytes() const {
        std::size_t n = 0;
        for (const auto& b : blocks_) n += static_cast<std::size_t>(b.size) * sizeof(T);
        return n;
    }

private:
    static constexpr index_t align_elems = static_cast<index_t>(64 / sizeof(T) ? 64 / sizeof(T) : 1);
    struct Block {
        std::unique_ptr<T[]> data;
        index_t size;
    };

    T* allocate(index_t n) {
        n = (n + align_elems - 1) / align_elems * align_elems;
        while (block_ < blocks_.size()) {
            Block& b = blocks_[block_];
            if (used_ + n <= b.size) {
                T* p = b.data.get() + used_;
                used_ += n;
                return p;
            }
            ++block_;
            used_ = 0;
        }
        const index_t last = blocks_.empty() ? 0 : blocks_.back().size;
        const index_t size = std::max<index_t>({n, 2 * last, index_t(1) << 16});
        blocks_.push_back({std::unique_ptr<T[]>(new T[static_cast<std::size_t>(size)]), size});
        block_ = blocks_.size() - 1;
        used_ = n;
        return blocks_.back().data.get();
    }

    std::vector<Block> blocks_;
    std::size_t block_ = 0;
    index_t used_ = 0;
};

}  // namespace mmalign::cpu
