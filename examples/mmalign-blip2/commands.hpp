// examples/mmalign-blip2/commands.hpp — the commands mmalign-blip2 keeps in their own file
// (training.cpp: pretraining, fine-tuning and evaluation).
#pragma once

#include <string>

namespace mmalign::blip2cli {

bool is_training_command(const std::string& command);
/// main() of those commands (argv[1] is the command).
int training_main(int argc, char** argv);

}  // namespace mmalign::blip2cli
