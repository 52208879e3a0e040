// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title Multicall3 (subset): `tryAggregate` and `aggregate3`, ABI-compatible with the
/// canonical Multicall3 at 0xcA11bde05977b3631167028862bE2a173976CA11. the x402 EVM facilitator (npm x402/evm)
/// reads token state through `tryAggregate` at that address to explain a failed simulation
/// (nonce used, insufficient balance, name/version mismatch); a fresh anvil has no code there.
contract Multicall3 {
    struct Call {
        address target;
        bytes callData;
    }

    struct Call3 {
        address target;
        bool allowFailure;
        bytes callData;
    }

    struct Result {
        bool success;
        bytes returnData;
    }

    function tryAggregate(bool requireSuccess, Call[] calldata calls) public payable returns (Result[] memory returnData) {
        returnData = new Result[](calls.length);
        for (uint256 i = 0; i < calls.length; i++) {
            (bool success, bytes memory ret) = calls[i].target.call(calls[i].callData);
            if (requireSuccess) require(success, "Multicall3: call failed");
            returnData[i] = Result(success, ret);
        }
    }

    function aggregate3(Call3[] calldata calls) public payable returns (Result[] memory returnData) {
        returnData = new Result[](calls.length);
        for (uint256 i = 0; i < calls.length; i++) {
            (bool success, bytes memory ret) = calls[i].target.call(calls[i].callData);
            require(success || calls[i].allowFailure, "Multicall3: call failed");
            returnData[i] = Result(success, ret);
        }
    }
}
