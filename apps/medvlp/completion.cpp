// medvlp completion bash: a bash completion script generated from the command line itself, so the
// subcommands and options it offers are always the ones this binary accepts.
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "commands.h"

namespace medvlp::app {

namespace {

struct OptionNames {
  std::vector<std::string> all;      // every spelling, -o and --out alike
  std::vector<std::string> valued;   // those followed by a value
  // Option -> its fixed choices, from an IsMember check ("TEXT:{a,b}"), as case-pattern lines.
  std::vector<std::pair<std::string, std::string>> choices;
};

std::string join(const std::vector<std::string>& items, const std::string& sep) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : sep) + s;
  return out;
}

OptionNames names_of(const CLI::App& app, const CLI::App* root) {
  OptionNames n;
  auto add = [&](const CLI::Option* o) {
    if (!o->nonpositional()) return;
    std::vector<std::string> spellings;
    for (const auto& s : o->get_snames()) spellings.push_back("-" + s);
    for (const auto& l : o->get_lnames()) spellings.push_back("--" + l);
    n.all.insert(n.all.end(), spellings.begin(), spellings.end());
    if (o->get_expected_max() == 0) return;  // a flag
    n.valued.insert(n.valued.end(), spellings.begin(), spellings.end());
    const std::string type = o->get_type_name();
    const auto open = type.find(":{");
    if (open != std::string::npos && type.back() == '}') {
      std::string values = type.substr(open + 2, type.size() - open - 3);
      for (char& c : values)
        if (c == ',') c = ' ';
      n.choices.emplace_back(join(spellings, "|"), values);
    }
  };
  for (const CLI::Option* o : app.get_options()) add(o);
  // Options of the tool (--log-level) are accepted after the subcommand too.
  if (root != nullptr)
    for (const CLI::Option* o : root->get_options())
      if (o->get_lnames() != std::vector<std::string>{"help"} && o->get_lnames() != std::vector<std::string>{"version"})
        add(o);
  return n;
}

}  // namespace

std::string bash_completion(const CLI::App& root) {
  const std::string name = "medvlp";
  std::vector<std::string> subs;
  for (const CLI::App* sub : root.get_subcommands([](const CLI::App*) { return true; })) subs.push_back(sub->get_name());
  std::ostringstream out;
  out << "# bash completion for " << name << ", written by `" << name << " completion bash`.\n"
      << "# Use: source <(" << name << " completion bash), or save it as\n"
      << "# ~/.local/share/bash-completion/completions/" << name << ".\n"
      << "_" << name << "() {\n"
      << "  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} sub= i\n"
      << "  for ((i = 1; i < COMP_CWORD; i++)); do\n"
      << "    case ${COMP_WORDS[i]} in " << join(subs, "|") << ") sub=${COMP_WORDS[i]}; break ;; esac\n"
      << "  done\n"
      << "  local opts valued\n"
      << "  case $sub in\n";
  auto emit = [&](const std::string& pattern, const OptionNames& n, const std::string& extra) {
    out << "    " << pattern << ")\n"
        << "      opts=\"" << join(n.all, " ") << "\"\n"
        << "      valued=\" " << join(n.valued, " ") << " \"\n";
    if (!n.choices.empty()) {
      out << "      case $prev in\n";
      for (const auto& [spellings, values] : n.choices)
        out << "        " << spellings << ") COMPREPLY=($(compgen -W \"" << values << "\" -- \"$cur\")); return ;;\n";
      out << "      esac\n";
    }
    out << extra << "      ;;\n";
  };
  emit("\"\"", names_of(root, nullptr),
       "      if [[ $cur != -* && $valued != *\" $prev \"* ]]; then\n"
       "        COMPREPLY=($(compgen -W \"" + join(subs, " ") + "\" -- \"$cur\")); return\n"
       "      fi\n");
  for (const CLI::App* sub : root.get_subcommands([](const CLI::App*) { return true; }))
    emit(sub->get_name(), names_of(*sub, &root), "");
  out << "  esac\n"
      << "  if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W \"$opts\" -- \"$cur\")); return; fi\n"
      << "  # Values and positional arguments are paths: configs, checkpoints, images, run folders.\n"
      << "  compopt -o filenames 2>/dev/null\n"
      << "  COMPREPLY=($(compgen -f -- \"$cur\"))\n"
      << "}\n"
      << "complete -F _" << name << " " << name << "\n";
  return out.str();
}

}  // namespace medvlp::app
