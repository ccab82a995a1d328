// The Chinchilla file reader with its SHA-256 (FIPS 180-4, written out so the tests need no
// crypto library) and the Parcae-140M isoFLOP design of the synthetic cases.
#include "test_data.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <sstream>
#include <stdexcept>

namespace parcae::fitting::testing {

std::string chinchilla_csv_path() {
  return std::string(PARCAE_SOURCE_DIR) + "/tests/testdata/chinchilla_epoch_svg_extracted.csv";
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw std::runtime_error("cannot open " + path);
  }
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

std::string sha256_hex(const std::string& bytes) {
  static const std::uint32_t k[64] = {
      0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
      0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
      0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
      0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
      0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
      0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
      0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
      0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
      0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
      0xc67178f2};
  std::uint32_t h[8] = {0x6a09e667,
                        0xbb67ae85,
                        0x3c6ef372,
                        0xa54ff53a,
                        0x510e527f,
                        0x9b05688c,
                        0x1f83d9ab,
                        0x5be0cd19};
  std::string message = bytes;
  const std::uint64_t bit_length = static_cast<std::uint64_t>(bytes.size()) * 8;
  message.push_back(static_cast<char>(0x80));
  while (message.size() % 64 != 56) {
    message.push_back('\0');
  }
  for (int shift = 56; shift >= 0; shift -= 8) {
    message.push_back(static_cast<char>((bit_length >> shift) & 0xff));
  }
  auto rotr = [](std::uint32_t x, int n) { return (x >> n) | (x << (32 - n)); };
  for (std::size_t block = 0; block < message.size(); block += 64) {
    std::uint32_t w[64];
    for (int t = 0; t < 16; ++t) {
      w[t] = 0;
      for (int b = 0; b < 4; ++b) {
        w[t] = (w[t] << 8) | static_cast<unsigned char>(message[block + 4 * t + b]);
      }
    }
    for (int t = 16; t < 64; ++t) {
      const std::uint32_t s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
      const std::uint32_t s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
      w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    std::uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int t = 0; t < 64; ++t) {
      const std::uint32_t s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
      const std::uint32_t choice = (e & f) ^ (~e & g);
      const std::uint32_t t1 = hh + s1 + choice + k[t] + w[t];
      const std::uint32_t s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
      const std::uint32_t majority = (a & b) ^ (a & c) ^ (b & c);
      const std::uint32_t t2 = s0 + majority;
      hh = g;
      g = f;
      f = e;
      e = d + t1;
      d = c;
      c = b;
      b = a;
      a = t1 + t2;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += hh;
  }
  std::string hex;
  char buffer[9];
  for (std::uint32_t word : h) {
    std::snprintf(buffer, sizeof buffer, "%08x", word);
    hex += buffer;
  }
  return hex;
}

std::vector<ChinchillaRow> read_chinchilla_rows() {
  std::istringstream in(read_file(chinchilla_csv_path()));
  std::string line;
  std::getline(in, line);
  std::vector<std::string> header;
  {
    std::istringstream fields(line);
    std::string field;
    while (std::getline(fields, field, ',')) {
      header.push_back(field);
    }
  }
  auto column = [&](const std::string& name) {
    const auto it = std::find(header.begin(), header.end(), name);
    if (it == header.end()) {
      throw std::runtime_error("column " + name + " missing from " + chinchilla_csv_path());
    }
    return static_cast<std::size_t>(it - header.begin());
  };
  const std::size_t n_col = column("Model Size"), c_col = column("Training FLOP"),
                    l_col = column("loss");
  std::vector<ChinchillaRow> rows;
  while (std::getline(in, line)) {
    if (line.empty()) {
      continue;
    }
    std::vector<std::string> fields;
    std::istringstream cells(line);
    std::string field;
    while (std::getline(cells, field, ',')) {
      fields.push_back(field);
    }
    rows.push_back(
        {std::stod(fields.at(n_col)), std::stod(fields.at(c_col)), std::stod(fields.at(l_col))});
  }
  return rows;
}

ChinchillaData chinchilla_data(const std::vector<ChinchillaRow>& rows, bool keep_all) {
  std::vector<double> losses;
  for (const ChinchillaRow& row : rows) {
    losses.push_back(row.loss);
  }
  std::sort(losses.begin(), losses.end(), std::greater<>());
  const double fifth_largest = losses.at(4);
  ChinchillaData data;
  for (const ChinchillaRow& row : rows) {
    if (!keep_all && !(row.loss < fifth_largest)) {
      continue;
    }
    data.params.push_back(row.params);
    data.tokens.push_back(row.flops / (6.0 * row.params));
    data.loss.push_back(row.loss);
  }
  return data;
}

std::vector<DesignRun> parcae140m_design() {
  std::vector<DesignRun> design;
  for (double budget : {1e18, 2e18, 4e18, 8e18, 16e18, 64e18}) {
    for (int mu = 2; mu <= 12; mu += 2) {
      const double flops = parcae140m_flops(mu, (mu + 1) / 2);
      design.push_back({static_cast<double>(mu), budget, std::floor(budget / flops)});
    }
  }
  return design;
}

}  // namespace parcae::fitting::testing
